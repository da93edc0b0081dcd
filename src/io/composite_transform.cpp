// Composite transform files (.h5) as antsRegistration --write-composite-transform 1 writes them
// (include/gigareg/composite_transform.hpp).

#include <itkAffineTransform.h>
#include <itkCompositeTransform.h>
#include <itkDisplacementFieldTransform.h>
#include <itkTransformFileReader.h>
#include <itkTransformFileWriter.h>

#include <cmath>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "gigareg/composite_transform.hpp"
#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "io/io_internal.hpp"

namespace gigareg {
namespace {

using Composite = itk::CompositeTransform<double, 3>;
using Affine = itk::AffineTransform<double, 3>;
using FieldTransform = itk::DisplacementFieldTransform<double, 3>;

Affine::Pointer itk_affine(const ItkAffine& a, const std::string& path) {
  for (double v : a.matrix.m)
    if (!std::isfinite(v)) throw_error(ErrorKind::InvalidArgument, path, "the affine matrix is not finite");
  auto t = Affine::New();
  Affine::InputPointType c;
  Affine::MatrixType m;
  Affine::OutputVectorType tr;
  for (unsigned r = 0; r < 3; ++r) {
    c[r] = a.center[int(r)];
    tr[r] = a.translation[int(r)];
    for (unsigned k = 0; k < 3; ++k) m(r, k) = a.matrix(int(r), int(k));
  }
  t->SetCenter(c);
  t->SetMatrix(m);
  t->SetTranslation(tr);
  return t;
}

/// The planar float field as ITK's interleaved double vectors (DisplacementFieldTransform<double>
/// stores and writes doubles, as ANTs' composites hold them).
FieldTransform::Pointer itk_field_transform(const DisplacementField& field, const std::string& path) {
  if (field.space() != MemorySpace::Host || field.components() != 3 ||
      !(field.box() == Box{{0, 0, 0}, field.geometry().size}))
    throw_error(ErrorKind::InvalidArgument, path, "the displacement field must be a whole 3-component host volume");
  const Geometry& g = field.geometry();
  g.validate(path);
  using FieldImage = FieldTransform::DisplacementFieldType;
  auto image = FieldImage::New();
  FieldImage::RegionType region;
  FieldImage::SpacingType spacing;
  FieldImage::PointType origin;
  FieldImage::DirectionType direction;
  for (unsigned a = 0; a < 3; ++a) {
    region.SetSize(a, itk::SizeValueType(g.size[int(a)]));
    spacing[a] = g.spacing[int(a)];
    origin[a] = g.origin[int(a)];
    for (unsigned c = 0; c < 3; ++c) direction(a, c) = g.direction(int(a), int(c));
  }
  image->SetRegions(region);
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  const index_t n = field.voxel_count();
  require_available(std::size_t(n) * 3 * sizeof(double), MemorySpace::Host, path);
  try {
    image->Allocate();
  } catch (const std::bad_alloc&) {
    throw_error(ErrorKind::OutOfMemory, path, "cannot allocate the double-precision copy of the field");
  }
  const float* planes = field.data();
  auto* out = image->GetBufferPointer();
  for (index_t i = 0; i < n; ++i)
    for (unsigned c = 0; c < 3; ++c) out[i][c] = double(planes[index_t(c) * n + i]);
  auto t = FieldTransform::New();
  t->SetDisplacementField(image);
  return t;
}

void write(const std::string& path, Composite* composite) {
  if (io_detail::extension_of(path) != ".h5")
    throw_error(ErrorKind::InvalidArgument, path,
                "composite transforms are written in ITK's HDF5 format: give a name ending in .h5");
  register_itk_io_factories();
  io_detail::StagedFile staged(path);
  io_detail::write_itk_transform(staged, composite);
  staged.commit();
}

bool has_field(const DisplacementField* f) { return f != nullptr && !f->empty(); }

/// The displacement field of an ITK field transform as a planar float host volume.
template <class Scalar>
DisplacementField planar_field(const itk::DisplacementFieldTransform<Scalar, 3>& t, const std::string& path) {
  const auto* image = t.GetDisplacementField();
  if (image == nullptr) throw_error(ErrorKind::InvalidInput, path, "holds a displacement field transform without a field");
  Geometry g;
  const auto& region = image->GetLargestPossibleRegion();
  for (unsigned a = 0; a < 3; ++a) {
    g.size[int(a)] = index_t(region.GetSize(a));
    g.spacing[int(a)] = image->GetSpacing()[a];
    g.origin[int(a)] = image->GetOrigin()[a];
    for (unsigned c = 0; c < 3; ++c) g.direction(int(a), int(c)) = image->GetDirection()(a, c);
  }
  g.validate(path + ": displacement field");
  DisplacementField field(g, 3);
  const index_t n = field.voxel_count();
  const auto* in = image->GetBufferPointer();
  float* planes = field.data();
  for (index_t i = 0; i < n; ++i)
    for (unsigned c = 0; c < 3; ++c) {
      const double v = double(in[i][c]);
      // Checked before the conversion: a double beyond float's range converts undefinedly.
      if (!(std::abs(v) <= double(std::numeric_limits<float>::max())))
        throw_error(ErrorKind::InvalidInput, path,
                    "the displacement field holds a displacement that is NaN, infinite or beyond the "
                    "float32 range (voxel " + std::to_string(i) + ", component " + std::to_string(c) + ")");
      planes[index_t(c) * n + i] = float(v);
    }
  return field;
}

/// Appends `t` to `chain` in point order (a composite: its last member first).
void unroll(const itk::TransformBaseTemplate<double>* t, const std::string& path,
            std::vector<ChainTransform>& chain) {
  if (t == nullptr) throw_error(ErrorKind::InvalidInput, path, "holds an empty transform");
  if (t->GetInputSpaceDimension() != 3 || t->GetOutputSpaceDimension() != 3)
    throw_error(ErrorKind::InvalidInput, path,
                std::string("holds a ") + std::to_string(t->GetInputSpaceDimension()) + "-D " +
                    t->GetNameOfClass() + "; 3-D transforms are expected");
  if (const auto* composite = dynamic_cast<const Composite*>(t)) {
    for (auto k = composite->GetNumberOfTransforms(); k > 0; --k)
      unroll(composite->GetNthTransformConstPointer(k - 1), path, chain);
    return;
  }
  ChainTransform step;
  if (const auto* linear = dynamic_cast<const itk::MatrixOffsetTransformBase<double, 3, 3>*>(t)) {
    // Through ITK's parameters (matrix, translation, centre), as read_affine_transform reads them.
    step.affine = io_detail::itk_affine_parameters(*linear, path).affine();
  } else if (const auto* field = dynamic_cast<const FieldTransform*>(t)) {
    step.is_field = true;
    step.field = planar_field(*field, path);
  } else if (const auto* field_f = dynamic_cast<const itk::DisplacementFieldTransform<float, 3>*>(t)) {
    step.is_field = true;
    step.field = planar_field(*field_f, path);
  } else {
    throw_error(ErrorKind::InvalidInput, path,
                std::string("holds a ") + t->GetNameOfClass() +
                    "; gigareg applies linear transforms (MatrixOffsetTransformBase and its "
                    "subclasses) and displacement fields");
  }
  chain.push_back(std::move(step));
}

}  // namespace

std::vector<ChainTransform> read_transform_chain(const std::string& path) {
  register_itk_io_factories();
  io_detail::check_transform_file(path);
  auto reader = itk::TransformFileReaderTemplate<double>::New();
  reader->SetFileName(path);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    throw_error(ErrorKind::InvalidInput, path, "cannot read a transform: " + io_detail::itk_message(e));
  } catch (const std::exception& e) {
    throw_error(ErrorKind::InvalidInput, path, std::string("cannot read a transform: ") + e.what());
  }
  const auto* list = reader->GetTransformList();
  if (list == nullptr || list->empty()) throw_error(ErrorKind::InvalidInput, path, "holds no transform");
  // ITK's reader puts a composite first (its members may follow in the list as well); a list of
  // several plain transforms has no agreed order, so it is refused.
  const itk::TransformBaseTemplate<double>* first = list->front().GetPointer();
  if (list->size() != 1 && dynamic_cast<const Composite*>(first) == nullptr)
    throw_error(ErrorKind::InvalidInput, path,
                "holds " + std::to_string(list->size()) +
                    " transforms that are not one composite transform; expected one transform or "
                    "one CompositeTransform");
  std::vector<ChainTransform> chain;
  unroll(first, path, chain);
  return chain;
}

void write_composite_transform(const std::string& path, const ItkAffine& affine, const DisplacementField* warp) {
  auto composite = Composite::New();
  composite->AddTransform(itk_affine(affine, path));  // applied last
  if (has_field(warp)) composite->AddTransform(itk_field_transform(*warp, path));  // applied first
  write(path, composite);
}

void write_inverse_composite_transform(const std::string& path, const ItkAffine& affine,
                                       const DisplacementField* inverse_warp) {
  const Affine::Pointer forward = itk_affine(affine, path);
  auto inverse = Affine::New();
  if (!forward->GetInverse(inverse))
    throw_error(ErrorKind::InvalidArgument, path, "the affine transform is singular: it has no inverse");
  auto composite = Composite::New();
  if (has_field(inverse_warp)) composite->AddTransform(itk_field_transform(*inverse_warp, path));  // applied last
  composite->AddTransform(inverse);  // applied first
  write(path, composite);
}

}  // namespace gigareg
