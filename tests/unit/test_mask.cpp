// The mask ops (gigareg/ops/mask.hpp), one body per backend (CUDA skips without a device): the
// loss mask is the AND of the sampled moving mask and the fixed mask (each counting above 0.5),
// written on the owned box only; bad views are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/mask.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

class MaskOps : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::Cuda && !cuda_available()) GTEST_SKIP() << "no CUDA device";
    ctx = GetParam() == Backend::Cpu ? Context::cpu() : Context::cuda();
  }
  Volume<float> in_backend(const Volume<float>& v) const { return v.to(ctx.memory_space()); }
  static Volume<float> on_host(const Volume<float>& v) { return v.to(MemorySpace::Host); }
  Context ctx;
};

/// Values on both sides of 0.5 and 0.5 itself (which does not count).
Volume<float> mask_values(const Geometry& g, std::uint64_t seed) {
  Volume<float> v = random_volume(g, seed, 0.0, 1.0);
  for (index_t n = 0; n < v.voxel_count(); n += 11) v.data()[n] = 0.5f;
  return v;
}

}  // namespace

TEST_P(MaskOps, CombineMasksIsTheAndOnTheOwnedBoxOnly) {
  const Geometry g = make_geometry({37, 9, 8});
  const Box owned{{3, 1, 2}, {30, 7, 5}};
  const Volume<float> sampled = mask_values(g, 5), fixed = mask_values(g, 6);
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (bool with_fixed : {true, false}) {
    Volume<float> out(g);
    for (index_t n = 0; n < out.voxel_count(); ++n) out.data()[n] = poison;
    const Volume<float> s = in_backend(sampled), f = in_backend(fixed);
    Volume<float> o = in_backend(out);
    combine_masks(ctx, s.view(), with_fixed ? f.view() : VolumeView<const float>{}, o.view(), owned);
    const Volume<float> result = on_host(o);
    index_t ones = 0;
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const float r = result(i, j, k);
          if (!owned.contains(i, j, k)) {
            EXPECT_TRUE(std::isnan(r)) << "written outside the owned box at " << i << "," << j << "," << k;
            continue;
          }
          const bool counts = sampled(i, j, k) > 0.5f && (!with_fixed || fixed(i, j, k) > 0.5f);
          EXPECT_EQ(r, counts ? 1.0f : 0.0f) << i << "," << j << "," << k;
          ones += counts;
        }
    EXPECT_GT(ones, 0);
    EXPECT_LT(ones, owned.voxel_count());
  }
}

TEST_P(MaskOps, CombineMasksRefusesBadViews) {
  const Geometry g = make_geometry({8, 7, 6});
  const Box owned{{0, 0, 0}, g.size};
  const Volume<float> sampled = in_backend(mask_values(g, 1));
  const Volume<float> part = in_backend(copy_box(mask_values(g, 2), Box{{0, 0, 1}, {8, 7, 4}}));
  const Volume<float> field = in_backend(Volume<float>(g, 3));
  Volume<float> out = in_backend(Volume<float>(g));
  EXPECT_THROW(combine_masks(ctx, sampled.view(), part.view(), out.view(), owned), Error);
  EXPECT_THROW(combine_masks(ctx, field.view(), {}, out.view(), owned), Error);
  const Volume<float> other_grid = in_backend(Volume<float>(make_geometry({8, 7, 5})));
  EXPECT_THROW(combine_masks(ctx, other_grid.view(), {}, out.view(), Box{{0, 0, 0}, {8, 7, 5}}), Error);
  // The wrong memory space.
  if (ctx.backend == Backend::Cuda) {
    const Volume<float> h = mask_values(g, 3);
    EXPECT_THROW(combine_masks(ctx, h.view(), {}, out.view(), owned), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, MaskOps, ::testing::Values(Backend::Cpu, Backend::Cuda),
                         [](const ::testing::TestParamInfo<Backend>& p) { return std::string(to_string(p.param)); });
