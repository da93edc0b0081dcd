// Affine transforms in ITK transform files (.mat as ANTs writes them, .txt/.tfm, .h5).

#include <itkAffineTransform.h>
#include <itkCompositeTransform.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkTransformFileReader.h>
#include <itkTransformFileWriter.h>
#include <itkTransformIOFactory.h>

#include <algorithm>
#include <cmath>

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
    back = read_affine_transform(staged.temp_path());
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
      write_transform_h5(staged.temp_path(), path, transform);
      return;
    }
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    writer->SetFileName(staged.temp_path());
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

ItkAffine read_affine_transform(const std::string& path) {
  register_itk_io_factories();
  io_detail::require_readable_file(path);
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
