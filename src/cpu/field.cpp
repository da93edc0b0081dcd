// CPU reference of the displacement-field ops (OpenMP over rows through cpu/elementwise.hpp,
// deliberately plain). The per-voxel formulas are those of include/gigareg/device/field.hpp,
// shared with the kernels. Per-slice reductions (maxima and counts) are order-independent, hence
// identical for any thread count and any split into z-slabs.

#include "cpu/field.hpp"

#include "cpu/elementwise.hpp"
#include <cmath>
#include <vector>

namespace gigareg::cpu {
namespace {

/// NaN-propagating maximum (order-independent up to which NaN).
float max_nan(float a, float b) { return (b > a || std::isnan(b)) && !std::isnan(a) ? b : a; }

// Each slice's partial [largest, sum] from its rows' (row order, as the kernels' row groups):
// out[2 k] = the NaN-propagating maximum of row_max, out[2 k + 1] = the sum of row_sum.
void combine_rows(const std::vector<float>& row_max, const std::vector<double>& row_sum, index_t ny,
                  index_t nz, double* out) {
  for (index_t kk = 0; kk < nz; ++kk) {
    float m = 0.f;
    double sum = 0;
    for (index_t jj = 0; jj < ny; ++jj) {
      m = max_nan(m, row_max[std::size_t(kk * ny + jj)]);
      sum += row_sum[std::size_t(kk * ny + jj)];
    }
    out[2 * kk] = double(m);
    out[2 * kk + 1] = sum;
  }
}

}  // namespace

void compose(const ComposePlan& plan, VolumeView<const float> v, VolumeView<const float> u,
             VolumeView<float> out, const Box& owned, Boundary boundary) {
  const bool has_v = v.data != nullptr;
  for_each_element(owned, 1, [&](index_t i, index_t j, index_t k, int) {
    const Vec3f vv = has_v ? load_vec3(v, i, j, k) : Vec3f{0.f, 0.f, 0.f};
    store3(out, i, j, k, compose_voxel(plan, u, i, j, k, vv, boundary));
  });
}

void exp_field(const ComposePlan& plan, VolumeView<const float> v, int steps, VolumeView<float> out,
               Boundary boundary) {
  // Ping-pong between out and a contiguous scratch field so that the last squaring lands in out:
  // the scaled field starts in out when `steps` is even, in the scratch when it is odd.
  const Box whole{{0, 0, 0}, out.global_size};
  const index_t n = whole.voxel_count();
  std::vector<float> scratch_data(std::size_t(3 * n));
  const Index3 e = whole.size;
  const VolumeView<float> scratch{scratch_data.data(), e, {1, e.x, e.x * e.y}, n, 3, {0, 0, 0},
                                  out.global_size};
  VolumeView<float> cur = (steps % 2 == 0) ? out : scratch;
  VolumeView<float> next = (steps % 2 == 0) ? scratch : out;

  const float scale = float(std::ldexp(1.0, -steps));
  for_each_element(whole, 3, [&](index_t i, index_t j, index_t k, int c) {
    cur.at(i, j, k, c) = scale * v.at(i, j, k, c);
  });

  for (int s = 0; s < steps; ++s) {
    compose(plan, cur, cur, next, whole, boundary);
    const VolumeView<float> t = cur;
    cur = next;
    next = t;
  }
}

void invert(const ComposePlan& plan, VolumeView<const float> u, VolumeView<const float> initial,
            VolumeView<float> out, const Box& owned, int iterations, float tolerance,
            Boundary boundary, double* residual) {
  const bool has_init = initial.data != nullptr;
  const index_t ny = owned.size.y, nz = owned.size.z;
  std::vector<float> row_max(residual ? std::size_t(ny * nz) : 0);
  std::vector<double> row_count(residual ? std::size_t(ny * nz) : 0);
  for_each_row(owned, [&](index_t j, index_t k, index_t row) {
    float m = 0.f;
    double count = 0;
    for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i) {
      const Vec3f w0 = has_init ? load_vec3(initial, i, j, k) : Vec3f{0.f, 0.f, 0.f};
      float r = 0.f;
      store3(out, i, j, k, invert_voxel(plan, u, i, j, k, w0, iterations, tolerance, boundary, r));
      m = max_nan(m, r);
      if (!(r <= tolerance)) count += 1;
    }
    if (residual) {
      row_max[std::size_t(row)] = m;
      row_count[std::size_t(row)] = count;
    }
  });
  if (residual) combine_rows(row_max, row_count, ny, nz, residual);
}

void residual_norms(VolumeView<const float> e, const Mat3f& inverse_index_map, const Box& owned,
                    double* partials) {
  const index_t ny = owned.size.y, nz = owned.size.z;
  std::vector<float> row_max(std::size_t(ny * nz));
  std::vector<double> row_sum(std::size_t(ny * nz));
  for_each_row(owned, [&](index_t j, index_t k, index_t row) {
    float m = 0.f;
    double sum = 0;
    for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i) {
      const float n = norm_in_voxels(inverse_index_map, load_vec3(e, i, j, k));
      m = max_nan(m, n);
      sum += double(n);
    }
    row_max[std::size_t(row)] = m;
    row_sum[std::size_t(row)] = sum;
  });
  combine_rows(row_max, row_sum, ny, nz, partials);
}

void damped_inverse_step(VolumeView<const float> e, VolumeView<float> w,
                         const Mat3f& inverse_index_map, float epsilon, float clip,
                         bool pin_boundary, const Box& owned) {
  for_each_element(owned, 1, [&](index_t i, index_t j, index_t k, int) {
    store3(w, i, j, k,
           damped_inverse_step_voxel(e, w, inverse_index_map, epsilon, clip, pin_boundary, Index3{i, j, k}));
  });
}

void newton_direction(VolumeView<float> e, VolumeView<const float> w, const Mat3f& inverse_index_map,
                      const Box& owned) {
  for_each_element(owned, 1, [&](index_t i, index_t j, index_t k, int) {
    store3(e, i, j, k, newton_direction_voxel(w, inverse_index_map, Index3{i, j, k}, load_vec3(e, i, j, k)));
  });
}

void zero_boundary(VolumeView<float> field, const Box& owned) {
  for_each_element(owned, 1, [&](index_t i, index_t j, index_t k, int) {
    if (on_grid_boundary(Index3{i, j, k}, field.global_size)) store3(field, i, j, k, Vec3f{0.f, 0.f, 0.f});
  });
}

void jacobian_determinant(VolumeView<const float> u, const Mat3f& inverse_index_map,
                          VolumeView<float> det, const Box& owned, double* nonpositive) {
  const index_t ny = owned.size.y, nz = owned.size.z;
  std::vector<double> row_count(nonpositive ? std::size_t(ny * nz) : 0);
  for_each_row(owned, [&](index_t j, index_t k, index_t row) {
    double count = 0;
    for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i) {
      const float d = jacobian_determinant_voxel(u, inverse_index_map, Index3{i, j, k});
      if (det.data) det.at(i, j, k) = d;
      if (!(d > 0.f)) count += 1;
    }
    if (nonpositive) row_count[std::size_t(row)] = count;
  });
  if (nonpositive)
    for (index_t kk = 0; kk < nz; ++kk) {
      double count = 0;
      for (index_t jj = 0; jj < ny; ++jj) count += row_count[std::size_t(kk * ny + jj)];
      nonpositive[kk] = count;
    }
}

}  // namespace gigareg::cpu
