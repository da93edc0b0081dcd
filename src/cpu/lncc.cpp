// CPU reference of the LNCC loss and its exact gradient (src/ops/loss.cpp checks the arguments).
//
// The owned box is cut into tiles that span the whole owned x extent and kTile x kTile voxels in
// y and z. Each tile, on its own (thread-local buffers, nothing of volume size):
//   1. window sums of (F, W, FF, WW, FW) at every centre of C = tile grown by H (clipped to the
//      grid; only the tile itself for the value only or the ANTs gradient), separably: an x pass
//      over C.x x L.y x L.z (L = C grown by H, clipped), a y pass, a z pass, in double;
//   2. cc and the adjoint coefficients (a, b, c) of every masked centre in C (device/lncc.hpp);
//      -cc of centres inside the tile is added to per-row sums;
//   3. exact gradient: (a, b, c) box-filtered again (x, y, z passes) onto the tile, and
//      grad = A F + B W + C; ANTs' approximation: grad = n (a F + b W + c) at the centre.
// Every value at a global position is computed by the same expression in the same order
// whatever the tile, so the result does not depend on tiling, threads or z-slab sharding:
// the row sums are added in y order per slice.

#include <algorithm>
#include <vector>

#include "gigareg/ops/loss.hpp"

namespace gigareg::cpu {
namespace {

// Tiles of 32 x 32 (y, z): the halos of the exact gradient (2H on each side) make the eight passes
// touch about 9.9 tile areas per tile area at H = 2, against 12.1 with 16 x 16 (docs/benchmarks.md).
// The result does not depend on the tile size.
constexpr index_t kTile = 32;

struct Span {
  index_t lo = 0, hi = 0;
  index_t size() const { return hi - lo; }
  bool contains(index_t i) const { return i >= lo && i < hi; }
};

Span grow(Span s, index_t r, index_t n) { return {std::max<index_t>(0, s.lo - r), std::min(n, s.hi + r)}; }

// Q doubles per voxel over a box of global positions (x fastest): a tile's intermediate sums.
// The storage is kept between tiles (one per thread), so only reset() allocates, and rarely.
template <int Q>
class TileSums {
 public:
  /// `zero`: for a pass that leaves some positions unwritten (the coefficients of unmasked
  /// centres, which the adjoint passes read as 0); the other passes write every position.
  void reset(Span x, Span y, Span z, bool zero = false) {
    x_ = x, y_ = y, z_ = z;
    const std::size_t n = std::size_t(x.size() * y.size() * z.size() * Q);
    if (zero)
      values_.assign(n, 0.0);
    else
      values_.resize(n);
  }
  double* at(index_t x, index_t y, index_t z) {
    return &values_[std::size_t((((z - z_.lo) * y_.size() + (y - y_.lo)) * x_.size() + (x - x_.lo)) * Q)];
  }
  const double* at(index_t x, index_t y, index_t z) const {
    return const_cast<TileSums*>(this)->at(x, y, z);
  }
  Span x() const { return x_; }
  Span y() const { return y_; }
  Span z() const { return z_; }

 private:
  Span x_, y_, z_;
  std::vector<double> values_;
};

// The window's taps along one axis of the grid.
struct Window {
  const float* taps;
  int radius;
  Index3 grid;
};

// out(p) = sum over d of taps[H + d] in(p + d e_Axis), the offsets inside the grid only, for
// every p of out's box (in's box holds every position read). d runs upwards and the record's
// terms are accumulated in double in that order, so a value never depends on the tile.
template <int Axis, int Q>
void filter_along(const TileSums<Q>& in, TileSums<Q>& out, const Window& w) {
  const int H = w.radius;
  for (index_t z = out.z().lo; z < out.z().hi; ++z)
    for (index_t y = out.y().lo; y < out.y().hi; ++y)
      for (index_t x = out.x().lo; x < out.x().hi; ++x) {
        double s[Q] = {};
        for (int d = -H; d <= H; ++d) {
          Index3 p{x, y, z};
          p[Axis] += d;
          if (p[Axis] < 0 || p[Axis] >= w.grid[Axis]) continue;
          const double k = w.taps[H + d];
          const double* in_p = in.at(p.x, p.y, p.z);
          for (int q = 0; q < Q; ++q) s[q] += k * in_p[q];
        }
        double* out_p = out.at(x, y, z);
        for (int q = 0; q < Q; ++q) out_p[q] = s[q];
      }
}

// Step 1a: the x pass of (F, W, FF, WW, FW) read straight from the images, over out's box.
void image_sums_along_x(VolumeView<const float> fixed, VolumeView<const float> warped,
                        TileSums<5>& out, const Window& w) {
  const int H = w.radius;
  for (index_t z = out.z().lo; z < out.z().hi; ++z)
    for (index_t y = out.y().lo; y < out.y().hi; ++y)
      for (index_t x = out.x().lo; x < out.x().hi; ++x) {
        double s[5] = {0, 0, 0, 0, 0};
        for (int d = -H; d <= H; ++d) {
          const index_t xi = x + d;
          if (xi < 0 || xi >= w.grid.x) continue;
          const double k = w.taps[H + d];
          const double f = fixed.at(xi, y, z), m = warped.at(xi, y, z);
          s[0] += k * f;
          s[1] += k * m;
          s[2] += k * (f * f);
          s[3] += k * (m * m);
          s[4] += k * (f * m);
        }
        double* out_p = out.at(x, y, z);
        for (int q = 0; q < 5; ++q) out_p[q] = s[q];
      }
}

// What the loss needs besides the images: the configuration, n_a(i) per axis, and the outputs.
struct LnccJob {
  VolumeView<const float> fixed, warped, mask;
  Box owned;
  Window window;
  double eps, min_vf, min_vw;
  bool want_grad, exact;
  std::vector<double> n_axis[3];   // n_a(i) for every grid position along each axis
  std::vector<double> row_sum;     // -cc summed over the owned centres of each owned row
  std::vector<double> row_count;   // and their number
  VolumeView<float> grad;

  std::size_t row(index_t y, index_t z) const {
    return std::size_t((z - owned.lo.z) * owned.size.y + (y - owned.lo.y));
  }
};

// The thread's buffers, reused from tile to tile.
struct TileScratch {
  TileSums<5> along_x, along_xy, window;  // step 1: x, x-y and x-y-z window sums
  TileSums<3> coefficients;                // step 2: (a, b, c) at the centres
  TileSums<3> adj_x, adj_xy, adj_xyz;      // step 3: their adjoint passes onto the tile
};

// Step 2: cc and (a, b, c) at every masked centre of the window sums' box; the row sums of the
// centres inside the tile; ANTs' gradient at those centres when that is the gradient asked for.
void centre_coefficients(LnccJob& job, Span tx, Span ty, Span tz, TileScratch& t) {
  const TileSums<5>& sums = t.window;
  t.coefficients.reset(sums.x(), sums.y(), sums.z(), /*zero=*/true);
  const bool ants_grad = job.want_grad && !job.exact;
  for (index_t z = sums.z().lo; z < sums.z().hi; ++z)
    for (index_t y = sums.y().lo; y < sums.y().hi; ++y) {
      const bool row_owned = ty.contains(y) && tz.contains(z);
      double rs = 0.0, rc = 0.0;
      for (index_t x = sums.x().lo; x < sums.x().hi; ++x) {
        const bool centre_owned = row_owned && tx.contains(x);
        const bool masked = job.mask.data == nullptr || job.mask.at(x, y, z) > 0.5f;
        if (!masked) {
          if (centre_owned && ants_grad) job.grad.at(x, y, z) = 0.0f;
          continue;
        }
        const double* s = sums.at(x, y, z);
        const double n = job.n_axis[0][std::size_t(x)] * job.n_axis[1][std::size_t(y)] *
                         job.n_axis[2][std::size_t(z)];
        const LnccLocal<double> l =
            lncc_local<double>(n, s[0], s[1], s[2], s[3], s[4], job.eps, job.min_vf, job.min_vw);
        double* out = t.coefficients.at(x, y, z);
        out[0] = l.a;
        out[1] = l.b;
        out[2] = l.c;
        if (centre_owned) {
          rs += -l.cc;
          rc += 1.0;
          if (ants_grad) {
            const double f = job.fixed.at(x, y, z), m = job.warped.at(x, y, z);
            job.grad.at(x, y, z) = float(n * (l.a * f + l.b * m + l.c));
          }
        }
      }
      if (row_owned) {
        job.row_sum[job.row(y, z)] = rs;
        job.row_count[job.row(y, z)] = rc;
      }
    }
}

// One tile (whole owned x extent, ty x tz): steps 1 to 3.
void lncc_tile(LnccJob& job, Span ty, Span tz, TileScratch& t) {
  const Window& w = job.window;
  const Index3 G = w.grid;
  const index_t H = w.radius;
  const Span tx{job.owned.lo.x, job.owned.lo.x + job.owned.size.x};
  const index_t hc = job.exact ? H : 0;
  const Span cx = grow(tx, hc, G.x), cy = grow(ty, hc, G.y), cz = grow(tz, hc, G.z);
  const Span ly = grow(cy, H, G.y), lz = grow(cz, H, G.z);

  t.along_x.reset(cx, ly, lz);
  image_sums_along_x(job.fixed, job.warped, t.along_x, w);
  t.along_xy.reset(cx, cy, lz);
  filter_along<1>(t.along_x, t.along_xy, w);
  t.window.reset(cx, cy, cz);
  filter_along<2>(t.along_xy, t.window, w);
  centre_coefficients(job, tx, ty, tz, t);
  if (!job.exact) return;

  t.adj_x.reset(tx, cy, cz);
  filter_along<0>(t.coefficients, t.adj_x, w);
  t.adj_xy.reset(tx, ty, cz);
  filter_along<1>(t.adj_x, t.adj_xy, w);
  t.adj_xyz.reset(tx, ty, tz);
  filter_along<2>(t.adj_xy, t.adj_xyz, w);
  for (index_t z = tz.lo; z < tz.hi; ++z)
    for (index_t y = ty.lo; y < ty.hi; ++y)
      for (index_t x = tx.lo; x < tx.hi; ++x) {
        const double* s = t.adj_xyz.at(x, y, z);
        const double f = job.fixed.at(x, y, z), m = job.warped.at(x, y, z);
        job.grad.at(x, y, z) = float(s[0] * f + s[1] * m + s[2]);
      }
}

}  // namespace

void lncc_loss(VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccConfig& config,
               SlicePartials partials, VolumeView<float> grad) {
  LnccJob job{fixed, warped, mask, owned, Window{config.taps.w, config.taps.radius, fixed.global_size},
              double(config.eps), double(config.min_vf), double(config.min_vw),
              grad.data != nullptr, grad.data != nullptr && config.exact_gradient,
              {}, {}, {}, grad};
  const Index3 G = fixed.global_size;
  for (int a = 0; a < 3; ++a) {
    job.n_axis[a].resize(std::size_t(G[a]));
    for (index_t i = 0; i < G[a]; ++i)
      job.n_axis[a][std::size_t(i)] = lncc_axis_weight<double>(job.window.taps, job.window.radius, i, G[a]);
  }
  job.row_sum.assign(std::size_t(owned.size.y * owned.size.z), 0.0);
  job.row_count.assign(job.row_sum.size(), 0.0);
  const index_t tiles_y = (owned.size.y + kTile - 1) / kTile;
  const index_t tiles_z = (owned.size.z + kTile - 1) / kTile;
  const index_t y_end = owned.lo.y + owned.size.y, z_end = owned.lo.z + owned.size.z;

#pragma omp parallel
  {
    TileScratch scratch;
#pragma omp for schedule(dynamic) collapse(2)
    for (index_t tz = 0; tz < tiles_z; ++tz)
      for (index_t ty = 0; ty < tiles_y; ++ty) {
        const index_t y0 = owned.lo.y + ty * kTile, z0 = owned.lo.z + tz * kTile;
        lncc_tile(job, Span{y0, std::min(y0 + kTile, y_end)}, Span{z0, std::min(z0 + kTile, z_end)},
                  scratch);
      }
  }

  if (partials.data != nullptr)
    for (index_t k = 0; k < owned.size.z; ++k) {
      double s = 0.0, c = 0.0;
      for (index_t y = 0; y < owned.size.y; ++y) {
        s += job.row_sum[std::size_t(k * owned.size.y + y)];
        c += job.row_count[std::size_t(k * owned.size.y + y)];
      }
      partials.data[k * kLossTerms] = s;
      partials.data[k * kLossTerms + 1] = c;
    }
}

}  // namespace gigareg::cpu
