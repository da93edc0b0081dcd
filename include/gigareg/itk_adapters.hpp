#pragma once
// Adapters between gigareg volumes and itk::Image, for programs that embed gigareg in an ITK
// pipeline.
//
// Scalar images share memory in both directions (no copy):
//   to_itk_image(volume)   an itk::Image<float,3> whose pixel container points at the volume's
//                          buffer and does not own it: the volume must outlive the image.
//   wrap_itk_image(image)  a Volume<float> over the image's buffer (Volume::wrap): the image
//                          must outlive the volume.
// Displacement fields are planar in gigareg (x plane, then y plane, then z plane) and interleaved
// in ITK (itk::Vector<float,3> per voxel), so their conversions copy.
//
// Geometry is carried over unchanged: gigareg's direction is a row-major Mat3d whose columns are
// the physical directions of the index axes, the same layout as itk::Matrix(row, col) in
// itk::ImageBase::GetDirection().

#include <itkImage.h>
#include <itkImportImageContainer.h>
#include <itkVector.h>

#include <algorithm>
#include <string>

#include "gigareg/error.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

using ItkScalarImage = itk::Image<float, 3>;
using ItkDisplacementField = itk::Image<itk::Vector<float, 3>, 3>;

/// Geometry of the image's buffered region (origin = physical point of its first buffered voxel;
/// for an image whose buffer covers its whole grid from index 0, that is the image's origin).
inline Geometry itk_geometry(const itk::ImageBase<3>& image) {
  const auto region = image.GetBufferedRegion();
  Geometry g;
  g.size = {index_t(region.GetSize(0)), index_t(region.GetSize(1)), index_t(region.GetSize(2))};
  itk::Point<double, 3> first;
  image.TransformIndexToPhysicalPoint(region.GetIndex(), first);
  for (int a = 0; a < 3; ++a) {
    g.spacing[a] = image.GetSpacing()[a];
    g.origin[a] = first[a];
    for (int c = 0; c < 3; ++c) g.direction(a, c) = image.GetDirection()(a, c);
  }
  return g;
}

/// Sets spacing, origin and direction of `image` from `geometry`, and its largest possible region
/// to the whole grid; the buffered and requested regions are `box` (the whole grid by default).
inline void set_itk_geometry(itk::ImageBase<3>& image, const Geometry& geometry,
                             const Box* box = nullptr) {
  itk::ImageBase<3>::SpacingType spacing;
  itk::ImageBase<3>::PointType origin;
  itk::ImageBase<3>::DirectionType direction;
  itk::ImageRegion<3> whole, buffered;
  for (unsigned a = 0; a < 3; ++a) {
    spacing[a] = geometry.spacing[int(a)];
    origin[a] = geometry.origin[int(a)];
    for (unsigned c = 0; c < 3; ++c) direction(a, c) = geometry.direction(int(a), int(c));
    whole.SetIndex(a, 0);
    whole.SetSize(a, itk::SizeValueType(geometry.size[int(a)]));
    buffered.SetIndex(a, box ? itk::IndexValueType(box->lo[int(a)]) : 0);
    buffered.SetSize(a, itk::SizeValueType(box ? box->size[int(a)] : geometry.size[int(a)]));
  }
  image.SetSpacing(spacing);
  image.SetOrigin(origin);
  image.SetDirection(direction);
  image.SetLargestPossibleRegion(whole);
  image.SetBufferedRegion(buffered);
  image.SetRequestedRegion(buffered);
}

/// An itk::Image<float,3> over the volume's memory (no copy; the volume must outlive the image and
/// keep its buffer). A volume that holds a box of its grid (a slab) gives an image whose largest
/// possible region is the whole grid and whose buffered region is the box.
inline ItkScalarImage::Pointer to_itk_image(Volume<float>& volume) {
  GIGAREG_REQUIRE(!volume.empty(), "to_itk_image needs a non-empty volume");
  GIGAREG_REQUIRE(volume.space() == MemorySpace::Host, "to_itk_image needs a host volume");
  GIGAREG_REQUIRE(volume.components() == 1,
                  "to_itk_image takes scalar volumes; use to_itk_displacement_field for fields");
  volume.geometry().validate("to_itk_image");
  auto image = ItkScalarImage::New();
  const Box box = volume.box();
  set_itk_geometry(*image, volume.geometry(), &box);
  using Container = ItkScalarImage::PixelContainer;
  auto container = Container::New();
  container->SetImportPointer(volume.data(), itk::SizeValueType(volume.voxel_count()),
                              /*LetContainerManageMemory=*/false);
  image->SetPixelContainer(container);
  return image;
}

/// A Volume<float> over the image's buffer (Volume::wrap, no copy; the image must outlive it). The
/// volume's grid is the image's buffered region.
inline Volume<float> wrap_itk_image(ItkScalarImage* image) {
  GIGAREG_REQUIRE(image != nullptr && image->GetBufferPointer() != nullptr,
                  "wrap_itk_image needs an image with an allocated buffer");
  const Geometry g = itk_geometry(*image);
  g.validate("wrap_itk_image");
  return Volume<float>::wrap(image->GetBufferPointer(), g);
}

/// Copies a planar 3-component host volume into a new interleaved ITK vector image (whole grid).
inline ItkDisplacementField::Pointer to_itk_displacement_field(const DisplacementField& field) {
  GIGAREG_REQUIRE(!field.empty() && field.space() == MemorySpace::Host,
                  "to_itk_displacement_field needs a non-empty host volume");
  GIGAREG_REQUIRE(field.components() == 3, "a displacement field has 3 components");
  GIGAREG_REQUIRE(field.box() == (Box{{0, 0, 0}, field.geometry().size}),
                  "to_itk_displacement_field needs a volume covering its whole grid");
  field.geometry().validate("to_itk_displacement_field");
  auto image = ItkDisplacementField::New();
  set_itk_geometry(*image, field.geometry());
  image->Allocate();
  const index_t n = field.voxel_count();
  const float* planes = field.data();
  itk::Vector<float, 3>* out = image->GetBufferPointer();
  for (index_t i = 0; i < n; ++i)
    for (unsigned c = 0; c < 3; ++c) out[i][c] = planes[index_t(c) * n + i];
  return image;
}

/// Copies an interleaved ITK vector image (its buffered region) into a new planar volume.
inline DisplacementField from_itk_displacement_field(const ItkDisplacementField* image) {
  GIGAREG_REQUIRE(image != nullptr && image->GetBufferPointer() != nullptr,
                  "from_itk_displacement_field needs an image with an allocated buffer");
  const Geometry g = itk_geometry(*image);
  g.validate("from_itk_displacement_field");
  DisplacementField field(g, 3);
  const index_t n = field.voxel_count();
  const itk::Vector<float, 3>* in = image->GetBufferPointer();
  float* planes = field.data();
  for (unsigned c = 0; c < 3; ++c)
    for (index_t i = 0; i < n; ++i) planes[index_t(c) * n + i] = in[i][c];
  return field;
}

}  // namespace gigareg
