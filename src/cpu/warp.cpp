// CPU reference of the warp and its gradient (OpenMP over rows through cpu/elementwise.hpp,
// deliberately plain). The per-voxel formulas are those of
// include/gigareg/device/{warp,interpolate}.hpp, shared with the kernels.
//
// Reductions: each row (y, z) of the owned box accumulates its affine terms in double, x in order;
// a slice's partial is the sum of its rows in y order. The result depends neither on the thread
// count nor on how the grid is split into z-slabs.

#include "cpu/warp.hpp"

#include "cpu/elementwise.hpp"
#include "gigareg/error.hpp"
#include <vector>

namespace gigareg::cpu {
namespace {

template <Interpolation I, class T>
void warp_rows(const WarpPlan& plan, VolumeView<const T> moving,
               VolumeView<const float> displacement, VolumeView<float> out, const Box& owned,
               Boundary boundary) {
  const bool has_u = displacement.data != nullptr;
  for_each_element(owned, 1, [&](index_t i, index_t j, index_t k, int) {
    const Vec3f u = has_u ? load_vec3(displacement, i, j, k) : Vec3f{0.f, 0.f, 0.f};
    out.at(i, j, k) = warp_sample<I>(plan, moving, warp_position(plan, i, j, k, u), boundary);
  });
}

}  // namespace

void warp(const WarpPlan& plan, VolumeView<const float> moving, VolumeView<const float> displacement,
          VolumeView<float> out, const Box& owned, Interpolation interpolation, Boundary boundary) {
  switch (interpolation) {
    case Interpolation::Linear:
      warp_rows<Interpolation::Linear>(plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::Nearest:
      warp_rows<Interpolation::Nearest>(plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::Label:
      warp_rows<Interpolation::Label>(plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::BSpline:
      throw_error(ErrorKind::InvalidArgument, "warp", "BSpline samples coefficients: warp_bspline");
  }
}

void warp_bspline(const WarpPlan& plan, VolumeView<const double> coefficients,
                  VolumeView<const float> displacement, VolumeView<float> out, const Box& owned,
                  Boundary boundary) {
  warp_rows<Interpolation::BSpline>(plan, coefficients, displacement, out, owned, boundary);
}

void warp_backward(const WarpPlan& plan, VolumeView<const float> moving,
                   VolumeView<const float> displacement, VolumeView<const float> grad_out,
                   const Box& owned, Boundary boundary, VolumeView<float> grad_u,
                   double* affine_partials, VolumeView<float> grad_moving) {
  const bool has_u = displacement.data != nullptr;
  const bool want_u = grad_u.data != nullptr;
  const bool want_affine = affine_partials != nullptr;
  const index_t nx = owned.size.x, ny = owned.size.y, nz = owned.size.z;

  if (want_u || want_affine) {
    std::vector<double> rows(want_affine ? std::size_t(ny * nz * kAffineTerms) : 0);
    for_each_row(owned, [&](index_t j, index_t k, index_t row) {
      double acc[kAffineTerms] = {};
      for (index_t i = owned.lo.x; i < owned.lo.x + nx; ++i) {
        const Vec3f u = has_u ? load_vec3(displacement, i, j, k) : Vec3f{0.f, 0.f, 0.f};
        Vec3f gm;
        (void)sample_linear_grad(moving, warp_position(plan, i, j, k, u), boundary, gm);
        const float g = grad_out.at(i, j, k);
        if (want_u) {
          const Vec3f du = warp_grad_displacement(plan, gm, g);
          grad_u.at(i, j, k, 0) = du.x;
          grad_u.at(i, j, k, 1) = du.y;
          grad_u.at(i, j, k, 2) = du.z;
        }
        if (want_affine) warp_accumulate_affine(plan, gm, g, i, j, k, u, acc);
      }
      if (want_affine)
        for (int t = 0; t < kAffineTerms; ++t) rows[std::size_t(row * kAffineTerms + t)] = acc[t];
    });
    if (want_affine)
      for (index_t kk = 0; kk < nz; ++kk)
        for (int t = 0; t < kAffineTerms; ++t) {
          double s = 0;
          for (index_t jj = 0; jj < ny; ++jj) s += rows[std::size_t((kk * ny + jj) * kAffineTerms + t)];
          affine_partials[kk * kAffineTerms + t] = s;
        }
  }

  if (grad_moving.data) {
    // dL/dI(n) = sum_i g(i) w_n(m(i)): a scatter, done serially in (z, y, x) order so that it
    // is deterministic without atomics. The taps are those of the forward sample (same box and
    // boundary rule), computed with grad_moving's strides.
    for (index_t k = owned.lo.z; k < owned.lo.z + nz; ++k)
      for (index_t j = owned.lo.y; j < owned.lo.y + ny; ++j)
        for (index_t i = owned.lo.x; i < owned.lo.x + nx; ++i) {
          const Vec3f u = has_u ? load_vec3(displacement, i, j, k) : Vec3f{0.f, 0.f, 0.f};
          const Taps3 t = linear_taps(grad_moving, warp_position(plan, i, j, k, u), boundary);
          const float g = grad_out.at(i, j, k);
          const index_t oz[2] = {t.z.off0, t.z.off1}, oy[2] = {t.y.off0, t.y.off1},
                        ox[2] = {t.x.off0, t.x.off1};
          const bool vz[2] = {t.z.v0, t.z.v1}, vy[2] = {t.y.v0, t.y.v1}, vx[2] = {t.x.v0, t.x.v1};
          const float wz[2] = {t.z.w0, t.z.w1}, wy[2] = {t.y.w0, t.y.w1}, wx[2] = {t.x.w0, t.x.w1};
          for (int c = 0; c < 2; ++c)
            for (int b = 0; b < 2; ++b)
              for (int a = 0; a < 2; ++a)
                if (vz[c] && vy[b] && vx[a])
                  grad_moving.data[oz[c] + oy[b] + ox[a]] += g * ((wz[c] * wy[b]) * wx[a]);
        }
  }
}

}  // namespace gigareg::cpu
