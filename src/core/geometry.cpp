#include "gigareg/geometry.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <limits>
#include <sstream>

#include "gigareg/error.hpp"

namespace gigareg {
namespace {

Eigen::Matrix3d to_eigen(const Mat3d& m) {
  Eigen::Matrix3d e;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) e(r, c) = m(r, c);
  return e;
}
Mat3d from_eigen(const Eigen::Matrix3d& e) {
  Mat3d m{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m(r, c) = e(r, c);
  return m;
}

bool checked_product(index_t a, index_t b, index_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

}  // namespace

index_t Geometry::voxel_count() const {
  index_t xy = 0, xyz = 0;
  if (!checked_product(size.x, size.y, xy) || !checked_product(xy, size.z, xyz))
    throw_error(ErrorKind::InvalidInput, "geometry",
                "voxel count " + std::to_string(size.x) + "x" + std::to_string(size.y) + "x" +
                    std::to_string(size.z) + " overflows 64 bits");
  return xyz;
}

Affined Geometry::index_to_physical_map() const {
  Mat3d ds{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) ds(r, c) = direction(r, c) * spacing[c];
  return {ds, origin};
}

Affined Geometry::physical_to_index_map() const {
  const Affined fwd = index_to_physical_map();
  const Eigen::Matrix3d inv = to_eigen(fwd.matrix).inverse();
  const Mat3d m = from_eigen(inv);
  const Vec3d t = m * origin;
  return {m, {-t.x, -t.y, -t.z}};
}

Vec3d Geometry::index_to_physical(Vec3d index) const { return index_to_physical_map()(index); }
Vec3d Geometry::physical_to_index(Vec3d point) const { return physical_to_index_map()(point); }

BoundingBox Geometry::physical_bounds() const {
  const Affined map = index_to_physical_map();
  constexpr double inf = std::numeric_limits<double>::infinity();
  BoundingBox b{{inf, inf, inf}, {-inf, -inf, -inf}};
  for (int corner = 0; corner < 8; ++corner) {
    const Vec3d idx{(corner & 1) ? size.x - 0.5 : -0.5, (corner & 2) ? size.y - 0.5 : -0.5,
                    (corner & 4) ? size.z - 0.5 : -0.5};
    const Vec3d p = map(idx);
    for (int a = 0; a < 3; ++a) {
      b.min[a] = std::min(b.min[a], p[a]);
      b.max[a] = std::max(b.max[a], p[a]);
    }
  }
  return b;
}

bool Geometry::equals(const Geometry& other, double tolerance) const {
  if (size != other.size) return false;
  for (int a = 0; a < 3; ++a) {
    const double scale = std::max(std::abs(spacing[a]), std::abs(other.spacing[a]));
    if (std::abs(spacing[a] - other.spacing[a]) > tolerance * scale) return false;
    if (std::abs(origin[a] - other.origin[a]) > tolerance * scale) return false;
  }
  for (int i = 0; i < 9; ++i)
    if (std::abs(direction.m[i] - other.direction.m[i]) > tolerance) return false;
  return true;
}

void Geometry::validate(const std::string& where) const {
  auto fail = [&](const std::string& what) { throw_error(ErrorKind::InvalidInput, where, what); };
  for (int a = 0; a < 3; ++a)
    if (size[a] <= 0) fail("size " + describe() + " has a non-positive extent");
  try {
    (void)voxel_count();
  } catch (const Error& e) {
    fail(e.problem());
  }
  for (int a = 0; a < 3; ++a) {
    if (!std::isfinite(spacing[a])) fail("spacing along axis " + std::to_string(a) + " is not finite");
    if (spacing[a] <= 0)
      fail("spacing along axis " + std::to_string(a) + " is " + std::to_string(spacing[a]) +
           " (must be positive)");
    if (!std::isfinite(origin[a])) fail("origin is not finite");
  }
  for (double d : direction.m)
    if (!std::isfinite(d)) fail("direction matrix is not finite");
  // Singular when the columns are (nearly) linearly dependent; the direction cosines have unit
  // length in every valid image, so an absolute threshold on the determinant is meaningful.
  const double det = to_eigen(direction).determinant();
  if (std::abs(det) < 1e-6) fail("direction matrix is singular (determinant " + std::to_string(det) + ")");
}

std::string Geometry::describe() const {
  std::ostringstream s;
  s << size.x << "x" << size.y << "x" << size.z << " voxels, spacing " << spacing.x << "x"
    << spacing.y << "x" << spacing.z << " mm, origin (" << origin.x << ", " << origin.y << ", "
    << origin.z << ")";
  return s.str();
}

Geometry resized_geometry(const Geometry& g, Index3 new_size) {
  Geometry out = g;
  out.size = new_size;
  Vec3d shift_index{};
  for (int a = 0; a < 3; ++a) {
    out.spacing[a] = g.spacing[a] * double(g.size[a]) / double(new_size[a]);
    // Keep the outer voxel corner (continuous index -0.5) fixed: the new first voxel centre sits
    // half a new voxel inside it.
    shift_index[a] = 0.5 * (out.spacing[a] / g.spacing[a]) - 0.5;
  }
  out.origin = g.index_to_physical(shift_index);
  return out;
}

}  // namespace gigareg
