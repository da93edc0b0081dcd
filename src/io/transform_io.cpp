// Affine transforms in ITK transform files (.mat as ANTs writes them, .txt/.tfm, .h5).

#include <itkAffineTransform.h>
#include <itkCompositeTransform.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkTransformFileReader.h>
#include <itkTransformFactoryBase.h>
#include <itkTransformFileWriter.h>
#include <itkTransformIOFactory.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "io/io_internal.hpp"

namespace gigareg {

using io_detail::itk_message;

Vec3d ItkAffine::offset() const {
  const Vec3d mc = matrix * center;
  return translation + center - mc;
}

void write_affine_transform(const std::string& path, const Mat3d& matrix, const Vec3d& translation,
                            const Vec3d& center) {
  register_itk_io_factories();
  for (double v : matrix.m)
    if (!std::isfinite(v)) throw_error(ErrorKind::InvalidArgument, path, "the matrix is not finite");
  for (int a = 0; a < 3; ++a)
    if (!std::isfinite(translation[a]) || !std::isfinite(center[a]))
      throw_error(ErrorKind::InvalidArgument, path, "the translation or centre is not finite");

  io_detail::StagedFile staged(path);
  {
    using IO = itk::TransformIOFactoryTemplate<double>;
    itk::TransformIOBaseTemplate<double>::Pointer io;
    try {
      io = IO::CreateTransformIO(staged.temp_path().c_str(), itk::IOFileModeEnum::WriteMode);
    } catch (const itk::ExceptionObject&) {
      io = nullptr;
    }
    if (!io)
      throw_error(ErrorKind::InvalidArgument, path,
                  "no ITK transform writer handles the extension '" + io_detail::extension_of(path) +
                      "' (use .mat, .txt, .tfm or .h5)");
  }

  using Affine = itk::AffineTransform<double, 3>;
  auto transform = Affine::New();
  Affine::InputPointType c;
  Affine::MatrixType m;
  Affine::OutputVectorType t;
  for (unsigned r = 0; r < 3; ++r) {
    c[r] = center[int(r)];
    t[r] = translation[int(r)];
    for (unsigned k = 0; k < 3; ++k) m(r, k) = matrix(int(r), int(k));
  }
  transform->SetCenter(c);
  transform->SetMatrix(m);
  transform->SetTranslation(t);

  io_detail::write_itk_transform(staged, transform);
  // ITK's .mat and .txt writers use std::ofstream without checking it: a full disk or a file size
  // limit gives a short or empty file and no error. Read it back and compare (the .txt format
  // keeps 16 significant digits, hence the tolerance).
  ItkAffine back;
  try {
    back = read_affine_transform(staged.writer_name().path());
  } catch (const Error& e) {
    throw_error(ErrorKind::Io, path,
                "the written transform cannot be read back (disk full or file size limit?): " + e.problem());
  }
  auto close = [](double a, double b) { return std::abs(a - b) <= 1e-14 * std::max(1.0, std::abs(a)); };
  bool same = true;
  for (int r = 0; r < 3; ++r) {
    same = same && close(translation[r], back.translation[r]) && close(center[r], back.center[r]);
    for (int k = 0; k < 3; ++k) same = same && close(matrix(r, k), back.matrix(r, k));
  }
  if (!same) throw_error(ErrorKind::Io, path, "the written transform reads back with other values");
  staged.commit();
}

void write_affine_transform(const std::string& path, const ItkAffine& transform) {
  write_affine_transform(path, transform.matrix, transform.translation, transform.center);
}

void io_detail::write_itk_transform(const StagedFile& staged, const itk::TransformBaseTemplate<double>* transform) {
  const std::string& path = staged.final_path();
  try {
    if (extension_of(path) == ".h5") {
      // HDF5 writes through the descriptor it opens on this name (it resolves the name's links
      // only to record where the file lives, and fails if they lead elsewhere).
      write_transform_h5(staged.writer_name().path(), path, transform);
      return;
    }
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    const WriterName name = staged.writer_name();  // never through the destination's names
    writer->SetFileName(name.path());
    writer->SetInput(transform);
    writer->Update();
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::Io, path, "writing the transform failed: " + itk_message(e));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw_error(ErrorKind::Io, path, std::string("writing the transform failed: ") + e.what());
  }
}

namespace {

[[noreturn]] void bad_transform_file(const std::string& path, const std::string& what) {
  throw_error(ErrorKind::InvalidInput, path, "invalid transform file: " + what);
}

/// ITK's Matlab reader (vnl_matlab_read) reads what a variable's header announces without
/// checking the file's length: a truncated .mat gives parameters of whatever memory held. The
/// file must be a sequence of complete MAT v4 variables (a 20-byte header: type, rows, columns,
/// imaginary flag, name length; the name; rows x columns values).
void check_matlab_file(const std::string& path, const std::string& bytes) {
  std::size_t at = 0;
  int variables = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 20) bad_transform_file(path, "a MAT variable header is cut short at byte " + std::to_string(at));
    std::int32_t h[5];
    std::memcpy(h, bytes.data() + at, sizeof h);
    if (h[0] < 0 || h[0] > 4999) {  // not little-endian: MAT v4 big-endian (type code 1000 + ...)
      for (std::int32_t& v : h) v = std::int32_t(__builtin_bswap32(std::uint32_t(v)));
    }
    const std::int32_t type = h[0], rows = h[1], cols = h[2], imaginary = h[3], name_length = h[4];
    const int precision = (type / 10) % 10;  // 0 double, 1 float, 2 int32, 3 int16, 4 uint16, 5 uint8
    static const int kBytes[6] = {8, 4, 4, 2, 2, 1};
    if (type < 0 || type > 1999 || precision > 5 || type % 10 != 0 || (type / 100) % 10 != 0)
      bad_transform_file(path, "a MAT variable of type code " + std::to_string(type));
    if (rows < 0 || cols < 0 || (imaginary != 0 && imaginary != 1) || name_length < 1 || name_length > 4096)
      bad_transform_file(path, "a MAT variable header with impossible sizes (" + std::to_string(rows) + " x " +
                                   std::to_string(cols) + ", name of " + std::to_string(name_length) + " bytes)");
    const std::uint64_t values = std::uint64_t(rows) * std::uint64_t(cols) * std::uint64_t(imaginary + 1);
    const std::uint64_t size = 20 + std::uint64_t(name_length) + values * std::uint64_t(kBytes[precision]);
    if (size > bytes.size() - at)
      bad_transform_file(path, "the file is truncated: a MAT variable of " + std::to_string(size) + " bytes at byte " +
                                   std::to_string(at) + ", but the file holds " + std::to_string(bytes.size()) + " bytes");
    at += std::size_t(size);
    ++variables;
  }
  if (variables < 2) bad_transform_file(path, "a transform in MAT format needs its parameters and fixed parameters (2 variables)");
}

/// Whether a transform's parameter counts follow from its type alone: linear transforms of every
/// dimension (Rigid2D, Euler3D, Affine 4-D, Translation, Scale, ...) and the two of unknown
/// category (AzimuthElevationToCartesian, Rigid3DPerspective). Not fields, splines or velocity
/// fields (their fixed parameters give the grid and so the count; ITK checks those itself) and
/// not composites (their count is their parts').
bool counts_fixed_by_type(const itk::TransformBaseTemplate<double>& transform) {
  using Base = itk::TransformBaseTemplate<double>;
  const Base::TransformCategoryEnum category = transform.GetTransformCategory();
  if (category != Base::TransformCategoryEnum::Linear &&
      category != Base::TransformCategoryEnum::UnknownTransformCategory)
    return false;
  return !dynamic_cast<const itk::CompositeTransform<double, 2>*>(&transform) &&
         !dynamic_cast<const itk::CompositeTransform<double, 3>*>(&transform) &&
         !dynamic_cast<const itk::CompositeTransform<double, 4>*>(&transform);
}

/// ITK's text reader passes "Parameters:" to the transform whatever their number: too few are
/// read beyond the array, too many are ignored; and it sets them on whatever transform came
/// before, none included. This reads the lines as itk::TxtTransformIO does (trimmed of " \t\r\n",
/// "#" comments, "Name: value", values read as doubles until the first that is not one) and asks
/// that each parameter line follow a Transform line and hold the number the named transform takes
/// (for transforms whose number is fixed by their type, of any dimension: a 2-D Rigid2DTransform
/// given one parameter crashed ITK's reader before this covered 2-D and 4-D ones).
void check_text_file(const std::string& path, const std::string& bytes) {
  itk::TransformFactoryBase::RegisterDefaultTransforms();  // what ITK's reader creates them from
  auto trim = [](const std::string& text) {
    const char* blanks = " \t\r\n";
    const std::size_t first = text.find_first_not_of(blanks);
    if (first == std::string::npos) return std::string();
    return text.substr(first, text.find_last_not_of(blanks) - first + 1);
  };
  auto count_numbers = [](const std::string& values) {  // as vnl_vector's operator>> reads them
    std::istringstream parse(values);
    std::size_t n = 0;
    for (double v; parse >> v;) ++n;
    return n;
  };
  std::istringstream in(bytes);
  std::string line;
  bool seen_transform = false;
  itk::TransformBaseTemplate<double>::Pointer current;
  while (std::getline(in, line)) {
    line = trim(line);
    const std::size_t colon = line.find(':');
    if (line.empty() || line[0] == '#' || colon == std::string::npos) continue;  // ITK refuses the last itself
    const std::string key = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    if (key == "Transform") {
      std::string name = value;
      for (const char* from : {"_float_"}) {  // ITK reads float transforms as double ones
        const std::size_t at = name.find(from);
        if (at != std::string::npos) name.replace(at, std::strlen(from), "_double_");
      }
      seen_transform = true;
      itk::LightObject::Pointer made = itk::ObjectFactoryBase::CreateInstance(name.c_str());
      // CreateInstance hands the object over with one reference too many (ITK's own transform
      // readers drop it the same way).
      if (made) made->UnRegister();
      current = dynamic_cast<itk::TransformBaseTemplate<double>*>(made.GetPointer());
      if (current && !counts_fixed_by_type(*current)) current = nullptr;
    } else if (key == "Parameters" || key == "FixedParameters") {
      if (!seen_transform) bad_transform_file(path, key + " come before any Transform line");
      if (!current) continue;
      const std::size_t expected = key == "Parameters" ? std::size_t(current->GetNumberOfParameters())
                                                       : std::size_t(current->GetFixedParameters().Size());
      const std::size_t given = count_numbers(value);
      if (given != expected)
        bad_transform_file(path, key + " holds " + std::to_string(given) + " numbers before anything else; " +
                                     current->GetNameOfClass() + " takes " + std::to_string(expected));
    }
  }
}

}  // namespace

void io_detail::check_transform_file(const std::string& path) {
  require_readable_file(path);
  const std::string ext = extension_of(path);
  if (ext != ".mat" && ext != ".txt" && ext != ".tfm") return;  // .h5: HDF5 checks its own structure
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > (64u << 20)) return;  // not an affine: ITK says what it is
  if (ext == ".mat")
    check_matlab_file(path, bytes);
  else
    check_text_file(path, bytes);
}

ItkAffine read_affine_transform(const std::string& path) {
  register_itk_io_factories();
  io_detail::check_transform_file(path);
  using Reader = itk::TransformFileReaderTemplate<double>;
  auto reader = Reader::New();
  reader->SetFileName(path);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::InvalidInput, path, "cannot read a transform: " + itk_message(e));
  } catch (const std::exception& e) {
    throw_error(ErrorKind::InvalidInput, path, std::string("cannot read a transform: ") + e.what());
  }
  const Reader::TransformListType* list = reader->GetTransformList();
  if (!list || list->size() != 1)
    throw_error(ErrorKind::InvalidInput, path,
                "holds " + std::to_string(list ? list->size() : 0) +
                    " transforms; exactly one affine transform is expected");
  const itk::TransformBaseTemplate<double>* t = list->front().GetPointer();
  if (const auto* composite = dynamic_cast<const itk::CompositeTransform<double, 3>*>(t)) {
    if (composite->GetNumberOfTransforms() != 1)
      throw_error(ErrorKind::InvalidInput, path,
                  "holds a composite of " + std::to_string(composite->GetNumberOfTransforms()) +
                      " transforms; exactly one affine transform is expected");
    t = composite->GetNthTransformConstPointer(0);
  }
  const auto* linear = dynamic_cast<const itk::MatrixOffsetTransformBase<double, 3, 3>*>(t);
  if (!linear)
    throw_error(ErrorKind::InvalidInput, path,
                t ? "holds a " + std::to_string(t->GetInputSpaceDimension()) + "-D " +
                        t->GetNameOfClass() +
                        "; a 3-D affine transform (MatrixOffsetTransformBase or a linear subclass) "
                        "is expected"
                  : std::string("holds an empty transform"));
  return io_detail::itk_affine_parameters(*linear, path);
}

ItkAffine io_detail::itk_affine_parameters(const itk::MatrixOffsetTransformBase<double, 3, 3>& linear,
                                           const std::string& path) {
  ItkAffine out;
  const auto& m = linear.GetMatrix();
  const auto& tr = linear.GetTranslation();
  const auto& c = linear.GetCenter();
  for (int r = 0; r < 3; ++r) {
    out.translation[r] = tr[unsigned(r)];
    out.center[r] = c[unsigned(r)];
    for (int k = 0; k < 3; ++k) out.matrix(r, k) = m(unsigned(r), unsigned(k));
  }
  for (double v : out.matrix.m)
    if (!std::isfinite(v)) throw_error(ErrorKind::InvalidInput, path, "the transform's matrix is not finite");
  for (int a = 0; a < 3; ++a)
    if (!std::isfinite(out.translation[a]) || !std::isfinite(out.center[a]))
      throw_error(ErrorKind::InvalidInput, path, "the transform's translation or centre is not finite");
  return out;
}

}  // namespace gigareg
