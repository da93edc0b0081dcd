// The CC metric's texture mask (texture_mask.hpp).

#include "registration/texture_mask.hpp"

#include <algorithm>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#if GIGAREG_WITH_CUDA
#include "cuda/texture_mask.hpp"
#endif

namespace gigareg::reg {

Volume<float> texture_mask(const Context& ctx, const Volume<float>& image, const Volume<float>* mask,
                           const Box& out_box, int radius, double min_variance) {
  if (ctx.backend == Backend::Cpu) return texture_mask(image, mask, out_box, radius, min_variance);
  const Box region = out_box.grown_within(Index3{radius, radius, radius}, image.geometry().size);
  GIGAREG_REQUIRE(image.box().contains(region), "texture_mask: the image does not cover the windows");
  GIGAREG_REQUIRE(mask == nullptr || mask->box().contains(out_box), "texture_mask: the mask does not cover the box");
  Volume<float> out(image.geometry(), out_box, 1, ctx.memory_space());
#if GIGAREG_WITH_CUDA
  cuda::texture_mask(ctx.stream, image.view(), mask ? mask->view() : VolumeView<const float>{}, out.view(),
                     out_box, radius, min_variance);
#else
  throw_error(ErrorKind::Cuda, "texture_mask", "gigareg was built without CUDA");
#endif
  return out;
}

Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, const Box& out_box,
                           int radius, double min_variance) {
  const Geometry& g = image.geometry();
  const Index3 n = g.size;
  // The region whose window sums are needed: out_box grown by the radius, clipped.
  const Box region = out_box.grown_within(Index3{radius, radius, radius}, n);
  GIGAREG_REQUIRE(image.box().contains(region), "texture_mask: the image does not cover the windows");
  const VolumeView<const float> v = image.view();
  const VolumeView<const float> mk = mask ? mask->view() : VolumeView<const float>{};
  Volume<float> out(g, out_box, 1, MemorySpace::Host);
  VolumeView<float> o = out.view();
  const index_t ox = out_box.lo.x, nx = out_box.size.x, oy = out_box.lo.y, ny = out_box.size.y;
  const index_t ry = region.lo.y, nry = region.size.y;
  const index_t window_planes = 2 * index_t(radius) + 1;
  auto window = [&](index_t t, index_t len) {
    return double(std::min<index_t>(len - 1, t + radius) - std::max<index_t>(0, t - radius) + 1);
  };
  // Separable window sums of v and v^2 in double: x sums, then y sums of those (per plane), then z
  // sums of those. Each thread takes a run of output planes and keeps a ring of the 2r + 1 planes
  // of y sums its z windows need (a few MB instead of four region-sized arrays): every sum is
  // still formed from the same terms in the same order, so the mask is independent of the
  // threading and of out_box.
#pragma omp parallel
  {
    std::vector<double> ax(std::size_t(nry * nx)), ax2(std::size_t(nry * nx));
    std::vector<double> ring(std::size_t(window_planes * ny * nx)), ring2(ring.size());
    index_t next_plane = -1;  // the next plane of y sums this thread computes
    auto plane_sums = [&](index_t d) {
      // x sums of v, v^2 over the region's y range, at the output's x
      for (index_t j = 0; j < nry; ++j)
        for (index_t i = 0; i < nx; ++i) {
          const index_t x = ox + i;
          double s1 = 0, s2 = 0;
          for (index_t t = std::max<index_t>(0, x - radius); t <= std::min<index_t>(n.x - 1, x + radius); ++t) {
            const double val = double(v.at(t, ry + j, d));
            s1 += val;
            s2 += val * val;
          }
          ax[std::size_t(j * nx + i)] = s1;
          ax2[std::size_t(j * nx + i)] = s2;
        }
      // y sums of those, at the output's y
      const std::size_t slot = std::size_t(d % window_planes) * std::size_t(ny * nx);
      for (index_t j = 0; j < ny; ++j) {
        const index_t y = oy + j;
        for (index_t i = 0; i < nx; ++i) {
          double s1 = 0, s2 = 0;
          for (index_t t = std::max<index_t>(0, y - radius); t <= std::min<index_t>(n.y - 1, y + radius); ++t) {
            s1 += ax[std::size_t((t - ry) * nx + i)];
            s2 += ax2[std::size_t((t - ry) * nx + i)];
          }
          ring[slot + std::size_t(j * nx + i)] = s1;
          ring2[slot + std::size_t(j * nx + i)] = s2;
        }
      }
    };
#pragma omp for schedule(static)
    for (index_t k = out_box.lo.z; k < out_box.lo.z + out_box.size.z; ++k) {
      const index_t first = std::max<index_t>(0, k - radius), last = std::min<index_t>(n.z - 1, k + radius);
      if (next_plane < first) next_plane = first;  // a new run of planes (or the first)
      for (; next_plane <= last; ++next_plane) plane_sums(next_plane);
      for (index_t j = 0; j < ny; ++j)
        for (index_t i = 0; i < nx; ++i) {
          double s1 = 0, s2 = 0;
          for (index_t d = first; d <= last; ++d) {
            const std::size_t at = std::size_t(d % window_planes) * std::size_t(ny * nx) + std::size_t(j * nx + i);
            s1 += ring[at];
            s2 += ring2[at];
          }
          const index_t x = ox + i, y = oy + j;
          const double c = window(x, n.x) * window(y, n.y) * window(k, n.z);
          const double mean = s1 / c;
          const double var = s2 / c - mean * mean;
          const bool keep = var >= min_variance && (mask == nullptr || mk.at(x, y, k) > 0.5f);
          o.at(x, y, k) = keep ? 1.0f : 0.0f;
        }
    }
  }
  return out;
}

}  // namespace gigareg::reg
