#pragma once
// Geometry of a voxel grid in ITK's physical convention (LPS, millimetres):
//   p = origin + D * diag(spacing) * index
// where the columns of the direction matrix D are the physical directions of the index axes.

#include <array>
#include <string>

#include "gigareg/device/math.hpp"

namespace gigareg {

struct BoundingBox {
  Vec3d min, max;  // physical LPS corners, mm
};

struct Geometry {
  Index3 size{1, 1, 1};
  Vec3d spacing{1, 1, 1};
  Vec3d origin{0, 0, 0};
  Mat3d direction = Mat3d::identity();

  /// Number of voxels; throws InvalidInput if the product overflows 64 bits.
  index_t voxel_count() const;

  /// Continuous index -> physical point, and its inverse.
  Vec3d index_to_physical(Vec3d index) const;
  Vec3d physical_to_index(Vec3d point) const;
  /// The maps themselves, for kernels that fold them into one affine.
  Affined index_to_physical_map() const;
  Affined physical_to_index_map() const;

  /// Physical extent of the grid: the axis-aligned box around the corners of the voxels
  /// (continuous indices -0.5 and size - 0.5), as ITK's image regions cover them.
  BoundingBox physical_bounds() const;

  /// Same size, and spacing, origin and direction equal within `tolerance` (relative to the
  /// spacing for origin and spacing, absolute for direction cosines).
  bool equals(const Geometry& other, double tolerance = 1e-6) const;

  /// Throws gigareg::Error(InvalidInput) naming `where` if the geometry is unusable: a size that
  /// is not positive or whose voxel count overflows, a spacing that is zero, negative or not
  /// finite, a non-finite origin, or a singular or non-finite direction matrix.
  void validate(const std::string& where) const;

  std::string describe() const;  // one line for messages and logs
};

/// Geometry of a grid with the same physical extent and orientation sampled with a new size:
/// the corners of the voxel grid stay in place (ITK's shrink convention).
Geometry resized_geometry(const Geometry& g, Index3 new_size);

}  // namespace gigareg
