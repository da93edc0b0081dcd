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

constexpr index_t kTile = 16;

struct Span {
  index_t lo = 0, hi = 0;
  index_t size() const { return hi - lo; }
};

Span grow(Span s, index_t r, index_t n) { return {std::max<index_t>(0, s.lo - r), std::min(n, s.hi + r)}; }

}  // namespace

void lncc_loss(VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccConfig& config,
               SlicePartials partials, VolumeView<float> grad) {
  const int H = config.taps.radius;
  const float* taps = config.taps.w;
  const Index3 G = fixed.global_size;
  const bool want_grad = grad.data != nullptr;
  const bool exact = want_grad && config.exact_gradient;
  const double eps = double(config.eps);
  const double min_vf = double(config.min_vf), min_vw = double(config.min_vw);

  // n_a(i) for every grid position along each axis.
  std::vector<double> n_axis[3];
  for (int a = 0; a < 3; ++a) {
    n_axis[a].resize(std::size_t(G[a]));
    for (index_t i = 0; i < G[a]; ++i) n_axis[a][std::size_t(i)] = lncc_axis_weight<double>(taps, H, i, G[a]);
  }

  const index_t rows_y = owned.size.y;
  std::vector<double> row_sum(std::size_t(owned.size.y * owned.size.z), 0.0);
  std::vector<double> row_count(row_sum.size(), 0.0);
  const index_t tiles_y = (owned.size.y + kTile - 1) / kTile;
  const index_t tiles_z = (owned.size.z + kTile - 1) / kTile;

#pragma omp parallel
  {
    std::vector<double> sx, sy, abc, ax, ay;
#pragma omp for schedule(dynamic) collapse(2)
    for (index_t tz = 0; tz < tiles_z; ++tz)
      for (index_t ty = 0; ty < tiles_y; ++ty) {
        const Span tx_span{owned.lo.x, owned.lo.x + owned.size.x};
        const Span ty_span{owned.lo.y + ty * kTile, std::min(owned.lo.y + (ty + 1) * kTile, owned.lo.y + owned.size.y)};
        const Span tz_span{owned.lo.z + tz * kTile, std::min(owned.lo.z + (tz + 1) * kTile, owned.lo.z + owned.size.z)};
        const index_t hc = exact ? H : 0;
        const Span cx = grow(tx_span, hc, G.x), cy = grow(ty_span, hc, G.y), cz = grow(tz_span, hc, G.z);
        const Span ly = grow(cy, H, G.y), lz = grow(cz, H, G.z);
        const index_t CX = cx.size(), CY = cy.size(), CZ = cz.size(), LY = ly.size(), LZ = lz.size();

        // 1a. x pass: sx[((z * LY + y) * CX + x) * 5 + q] over C.x x L.y x L.z.
        sx.assign(std::size_t(CX * LY * LZ * 5), 0.0);
        for (index_t z = lz.lo; z < lz.hi; ++z)
          for (index_t y = ly.lo; y < ly.hi; ++y)
            for (index_t x = cx.lo; x < cx.hi; ++x) {
              double s[5] = {0, 0, 0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t xi = x + d;
                if (xi < 0 || xi >= G.x) continue;
                const double k = taps[H + d];
                const double f = fixed.at(xi, y, z), m = warped.at(xi, y, z);
                s[0] += k * f;
                s[1] += k * m;
                s[2] += k * (f * f);
                s[3] += k * (m * m);
                s[4] += k * (f * m);
              }
              double* out = &sx[std::size_t((((z - lz.lo) * LY + (y - ly.lo)) * CX + (x - cx.lo)) * 5)];
              for (int q = 0; q < 5; ++q) out[q] = s[q];
            }
        // 1b. y pass: sy over C.x x C.y x L.z.
        sy.assign(std::size_t(CX * CY * LZ * 5), 0.0);
        for (index_t z = lz.lo; z < lz.hi; ++z)
          for (index_t y = cy.lo; y < cy.hi; ++y)
            for (index_t x = cx.lo; x < cx.hi; ++x) {
              double s[5] = {0, 0, 0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t yi = y + d;
                if (yi < 0 || yi >= G.y) continue;
                const double k = taps[H + d];
                const double* in = &sx[std::size_t((((z - lz.lo) * LY + (yi - ly.lo)) * CX + (x - cx.lo)) * 5)];
                for (int q = 0; q < 5; ++q) s[q] += k * in[q];
              }
              double* out = &sy[std::size_t((((z - lz.lo) * CY + (y - cy.lo)) * CX + (x - cx.lo)) * 5)];
              for (int q = 0; q < 5; ++q) out[q] = s[q];
            }
        // 1c + 2. z pass, cc and adjoint coefficients at the centres of C.
        abc.assign(std::size_t(CX * CY * CZ * 3), 0.0);
        for (index_t z = cz.lo; z < cz.hi; ++z)
          for (index_t y = cy.lo; y < cy.hi; ++y) {
            const bool row_owned = y >= ty_span.lo && y < ty_span.hi && z >= tz_span.lo && z < tz_span.hi;
            double rs = 0.0, rc = 0.0;
            for (index_t x = cx.lo; x < cx.hi; ++x) {
              const bool centre_owned = row_owned && x >= tx_span.lo && x < tx_span.hi;
              const bool masked = mask.data == nullptr || mask.at(x, y, z) > 0.5f;
              double* out = &abc[std::size_t((((z - cz.lo) * CY + (y - cy.lo)) * CX + (x - cx.lo)) * 3)];
              if (!masked) {
                if (centre_owned && want_grad && !exact) grad.at(x, y, z) = 0.0f;
                continue;
              }
              double s[5] = {0, 0, 0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t zi = z + d;
                if (zi < 0 || zi >= G.z) continue;
                const double k = taps[H + d];
                const double* in = &sy[std::size_t((((zi - lz.lo) * CY + (y - cy.lo)) * CX + (x - cx.lo)) * 5)];
                for (int q = 0; q < 5; ++q) s[q] += k * in[q];
              }
              const double n = n_axis[0][std::size_t(x)] * n_axis[1][std::size_t(y)] * n_axis[2][std::size_t(z)];
              const LnccLocal<double> l =
                  lncc_local<double>(n, s[0], s[1], s[2], s[3], s[4], eps, min_vf, min_vw);
              out[0] = l.a;
              out[1] = l.b;
              out[2] = l.c;
              if (centre_owned) {
                rs += -l.cc;
                rc += 1.0;
                if (want_grad && !exact) {
                  const double f = fixed.at(x, y, z), m = warped.at(x, y, z);
                  grad.at(x, y, z) = float(n * (l.a * f + l.b * m + l.c));
                }
              }
            }
            if (row_owned) {
              const std::size_t r = std::size_t((z - owned.lo.z) * rows_y + (y - owned.lo.y));
              row_sum[r] = rs;
              row_count[r] = rc;
            }
          }
        if (!exact) continue;

        // 3. Adjoint passes onto the tile: x (tile.x x C.y x C.z), y (tile.x x tile.y x C.z), z.
        const index_t TX = tx_span.size(), TY = ty_span.size();
        ax.assign(std::size_t(TX * CY * CZ * 3), 0.0);
        for (index_t z = cz.lo; z < cz.hi; ++z)
          for (index_t y = cy.lo; y < cy.hi; ++y)
            for (index_t x = tx_span.lo; x < tx_span.hi; ++x) {
              double s[3] = {0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t xi = x + d;
                if (xi < 0 || xi >= G.x) continue;
                const double k = taps[H + d];
                const double* in = &abc[std::size_t((((z - cz.lo) * CY + (y - cy.lo)) * CX + (xi - cx.lo)) * 3)];
                for (int q = 0; q < 3; ++q) s[q] += k * in[q];
              }
              double* out = &ax[std::size_t((((z - cz.lo) * CY + (y - cy.lo)) * TX + (x - tx_span.lo)) * 3)];
              for (int q = 0; q < 3; ++q) out[q] = s[q];
            }
        ay.assign(std::size_t(TX * TY * CZ * 3), 0.0);
        for (index_t z = cz.lo; z < cz.hi; ++z)
          for (index_t y = ty_span.lo; y < ty_span.hi; ++y)
            for (index_t x = tx_span.lo; x < tx_span.hi; ++x) {
              double s[3] = {0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t yi = y + d;
                if (yi < 0 || yi >= G.y) continue;
                const double k = taps[H + d];
                const double* in = &ax[std::size_t((((z - cz.lo) * CY + (yi - cy.lo)) * TX + (x - tx_span.lo)) * 3)];
                for (int q = 0; q < 3; ++q) s[q] += k * in[q];
              }
              double* out = &ay[std::size_t((((z - cz.lo) * TY + (y - ty_span.lo)) * TX + (x - tx_span.lo)) * 3)];
              for (int q = 0; q < 3; ++q) out[q] = s[q];
            }
        for (index_t z = tz_span.lo; z < tz_span.hi; ++z)
          for (index_t y = ty_span.lo; y < ty_span.hi; ++y)
            for (index_t x = tx_span.lo; x < tx_span.hi; ++x) {
              double s[3] = {0, 0, 0};
              for (int d = -H; d <= H; ++d) {
                const index_t zi = z + d;
                if (zi < 0 || zi >= G.z) continue;
                const double k = taps[H + d];
                const double* in = &ay[std::size_t((((zi - cz.lo) * TY + (y - ty_span.lo)) * TX + (x - tx_span.lo)) * 3)];
                for (int q = 0; q < 3; ++q) s[q] += k * in[q];
              }
              const double f = fixed.at(x, y, z), m = warped.at(x, y, z);
              grad.at(x, y, z) = float(s[0] * f + s[1] * m + s[2]);
            }
      }
  }

  if (partials.data != nullptr)
    for (index_t k = 0; k < owned.size.z; ++k) {
      double s = 0.0, c = 0.0;
      for (index_t y = 0; y < rows_y; ++y) {
        s += row_sum[std::size_t(k * rows_y + y)];
        c += row_count[std::size_t(k * rows_y + y)];
      }
      partials.data[k * kLossTerms] = s;
      partials.data[k * kLossTerms + 1] = c;
    }
}

}  // namespace gigareg::cpu
