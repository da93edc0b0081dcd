// Gaussian smoothing and pyramid resampling on CUDA against the CPU reference, on fresh random
// inputs: values within 1e-5 relative, outputs NaN-poisoned first so that exactly the owned
// voxels must be written, GPU slabs with halos stitched bitwise against the GPU whole volume,
// kernels wider than the grid, a user stream.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/volume.hpp"
#include "ops/smooth_plan.hpp"

using namespace gigareg;

namespace {

#define REQUIRE_CUDA_DEVICE() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Mat3d rotation(double ax, double ay, double az) {
  const double cx = std::cos(ax), sx = std::sin(ax), cy = std::cos(ay), sy = std::sin(ay),
               cz = std::cos(az), sz = std::sin(az);
  const Mat3d rx{{1, 0, 0, 0, cx, -sx, 0, sx, cx}};
  const Mat3d ry{{cy, 0, sy, 0, 1, 0, -sy, 0, cy}};
  const Mat3d rz{{cz, -sz, 0, sz, cz, 0, 0, 0, 1}};
  return rz * ry * rx;
}

Geometry grid(Index3 size, Vec3d spacing = {1, 1, 1}, bool oblique = false) {
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.origin = {4.0, -12.5, 30.0};
  if (oblique) g.direction = rotation(-0.25, 0.15, 0.4);
  return g;
}

Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

Volume<float> random_volume(const Geometry& g, int components, unsigned seed, float lo = 0.5f,
                            float hi = 1.5f) {
  Volume<float> v(g, components);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = d(rng);
  return v;
}

Volume<float> crop(const Volume<float>& whole, const Box& box) {
  Volume<float> out(whole.geometry(), box, whole.components());
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) out(i, j, k, c) = whole(i, j, k, c);
  return out;
}

/// A device volume over `box` filled with NaN.
Volume<float> poisoned_device(const Geometry& g, const Box& box, int components) {
  Volume<float> h(g, box, components);
  h.fill(kNaN);
  return h.to(MemorySpace::Device);
}

/// On `owned`: max |gpu - cpu| / max(|cpu|, floor); outside owned (inside the gpu volume's box):
/// every element must still be NaN.
double compare_owned(const Volume<float>& gpu_host, const Volume<float>& cpu, const Box& owned,
                     double floor = 1e-3) {
  double worst = 0.0;
  const Box b = gpu_host.box();
  for (int c = 0; c < gpu_host.components(); ++c)
    for (index_t k = b.lo.z; k < b.hi().z; ++k)
      for (index_t j = b.lo.y; j < b.hi().y; ++j)
        for (index_t i = b.lo.x; i < b.hi().x; ++i) {
          const float g = gpu_host(i, j, k, c);
          if (!owned.contains(i, j, k)) {
            EXPECT_TRUE(std::isnan(g)) << "wrote outside owned at " << i << "," << j << "," << k;
            if (!std::isnan(g)) return 1e30;
            continue;
          }
          const double r = cpu(i, j, k, c);
          EXPECT_FALSE(std::isnan(g)) << "owned voxel not written at " << i << "," << j << "," << k;
          if (std::isnan(g)) return 1e30;
          worst = std::max(worst, std::abs(double(g) - r) / std::max(std::abs(r), floor));
        }
  return worst;
}

bool bitwise_equal_on(const Volume<float>& a, const Volume<float>& b, const Box& box) {
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) {
          const float x = a(i, j, k, c), y = b(i, j, k, c);
          if (std::memcmp(&x, &y, sizeof x) != 0) return false;
        }
  return true;
}

/// Smooths `in` on the CPU and on the GPU over `owned` (GPU output NaN-poisoned over the whole
/// grid) and returns the worst relative difference.
double smooth_gpu_vs_cpu(const Volume<float>& in, Vec3d sigma, const Box& owned) {
  const Geometry& g = in.geometry();
  Volume<float> cpu(g, in.components());
  gaussian_smooth(kCpu, in.view(), cpu.view(), sigma, owned);
  const Volume<float> d_in = in.to(MemorySpace::Device);
  Volume<float> d_out = poisoned_device(g, whole_box(g), in.components());
  gaussian_smooth(kGpu, d_in.view(), d_out.view(), sigma, owned);
  return compare_owned(d_out.to(MemorySpace::Host), cpu, owned);
}

}  // namespace

TEST(GaussianSmoothCuda, ScalarMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({40, 36, 33});
  const Volume<float> in = random_volume(g, 1, 101);
  EXPECT_LT(smooth_gpu_vs_cpu(in, {1.3, 0.9, 2.2}, whole_box(g)), 1e-5);
  EXPECT_LT(smooth_gpu_vs_cpu(in, {0.6, 3.1, 1.0}, whole_box(g)), 1e-5);
}

TEST(GaussianSmoothCuda, FieldMatchesCpuOnAnisotropicSpacing) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({32, 30, 28}, {0.7, 1.1, 1.9});
  const Volume<float> in = random_volume(g, 3, 102, -1.0f, 2.0f);
  EXPECT_LT(smooth_gpu_vs_cpu(in, sigma_mm_to_voxels(g, 2.0), whole_box(g)), 1e-5);
}

TEST(GaussianSmoothCuda, WritesExactlyTheOwnedBox) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({37, 29, 41});
  const Volume<float> in = random_volume(g, 3, 103);
  // A block off every edge, one touching the far corner, a single row, a single voxel.
  for (const Box& owned : {Box{{5, 3, 10}, {20, 17, 13}}, Box{{30, 20, 35}, {7, 9, 6}},
                           Box{{0, 7, 8}, {37, 1, 1}}, Box{{11, 12, 13}, {1, 1, 1}}})
    EXPECT_LT(smooth_gpu_vs_cpu(in, {1.4, 2.0, 0.8}, owned), 1e-5)
        << "owned at " << owned.lo.x << "," << owned.lo.y << "," << owned.lo.z;
}

TEST(GaussianSmoothCuda, KernelWiderThanTheGridAndSigmaZero) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({24, 20, 16});
  const Volume<float> in = random_volume(g, 1, 104);
  EXPECT_LT(smooth_gpu_vs_cpu(in, {6.0, 0.5, 10.0}, whole_box(g)), 1e-5);  // r = 18, 2, 30
  // Radii near the tile limits of every kernel: r = 63, 126, 64 and r = 128 (the maximum).
  EXPECT_LT(smooth_gpu_vs_cpu(in, {21.0, 42.0, 64.0 / 3.0}, whole_box(g)), 1e-5);
  EXPECT_LT(smooth_gpu_vs_cpu(in, {128.0 / 3.0, 128.0 / 3.0, 128.0 / 3.0}, whole_box(g)), 1e-5);
  EXPECT_LT(smooth_gpu_vs_cpu(in, {5.0, 5.0, 1.0}, whole_box(g)), 1e-5);  // fused y-x, opt-in smem
  EXPECT_LT(smooth_gpu_vs_cpu(in, {0.0, 1.0, 0.0}, whole_box(g)), 1e-5);
  // sigma 0 everywhere: an exact copy.
  const Volume<float> d_in = in.to(MemorySpace::Device);
  Volume<float> d_out = poisoned_device(g, whole_box(g), 1);
  gaussian_smooth(kGpu, d_in.view(), d_out.view(), {0, 0, 0}, whole_box(g));
  const Volume<float> out = d_out.to(MemorySpace::Host);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), in.bytes()), 0);
}

TEST(GaussianSmoothCuda, SlabsWithHalosStitchBitwiseOnGpu) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({34, 28, 45}, {1.0, 0.9, 1.2});
  for (int components : {1, 3}) {
    const Volume<float> in = random_volume(g, components, 105 + unsigned(components), -2.0f, 2.0f);
    const Vec3d sigma{1.6, 1.1, 2.7};
    const Volume<float> d_in = in.to(MemorySpace::Device);
    Volume<float> d_whole(g, components, MemorySpace::Device);
    gaussian_smooth(kGpu, d_in.view(), d_whole.view(), sigma, whole_box(g));
    const Volume<float> whole = d_whole.to(MemorySpace::Host);
    for (const Box& owned : {Box{{0, 0, 0}, {34, 28, 15}}, Box{{0, 0, 15}, {34, 28, 15}},
                             Box{{0, 0, 30}, {34, 28, 15}}, Box{{6, 4, 12}, {17, 13, 9}}}) {
      const Box in_box = smoothing_input_box(owned, g.size, sigma);
      const Volume<float> shard = crop(in, in_box).to(MemorySpace::Device);
      Volume<float> d_out = poisoned_device(g, in_box, components);
      gaussian_smooth(kGpu, shard.view(), d_out.view(), sigma, owned);
      const Volume<float> out = d_out.to(MemorySpace::Host);
      EXPECT_TRUE(bitwise_equal_on(out, whole, owned)) << "slab at z " << owned.lo.z;
      EXPECT_LT(compare_owned(out, whole, owned), 1e-30);  // and NaN outside owned
    }
  }
}

TEST(GaussianSmoothCuda, RunsOnAUserStream) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({30, 26, 22});
  const Volume<float> in = random_volume(g, 1, 107);
  Volume<float> cpu(g);
  gaussian_smooth(kCpu, in.view(), cpu.view(), {1.0, 1.5, 2.0}, whole_box(g));
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const Volume<float> d_in = in.to(MemorySpace::Device);
  Volume<float> d_out = poisoned_device(g, whole_box(g), 1);
  gaussian_smooth(Context::cuda(stream), d_in.view(), d_out.view(), {1.0, 1.5, 2.0}, whole_box(g));
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_LT(compare_owned(d_out.to(MemorySpace::Host), cpu, whole_box(g)), 1e-5);
  cudaStreamDestroy(stream);
}

TEST(GaussianSmoothCuda, AdjointIsBitwiseTheCpuAdjoint) {
  // The backward pass of gigareg.torch's smoothing on CUDA: the same gather formula as the CPU
  // (device/gaussian.hpp), so the two agree bitwise; on a user stream, every voxel written
  // (NaN-poisoned output), two components, kernels wider than their axis (r = 9 on 5 voxels:
  // both ends' tails on every line, and one line of a single voxel).
  REQUIRE_CUDA_DEVICE();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const struct {
    Index3 size;
    Vec3d sigma;
  } cases[] = {{{37, 29, 21}, {1.4, 2.0, 0.8}}, {{5, 23, 1}, {3.0, 0.0, 1.0}}, {{16, 12, 9}, {0.0, 0.0, 0.0}}};
  for (const auto& c : cases) {
    const Geometry g = grid(c.size);
    const Volume<float> in = random_volume(g, 2, 108, -1.0f, 1.0f);
    Volume<float> cpu(g, 2);
    gaussian_smooth_adjoint(kCpu, in.view(), cpu.view(), c.sigma);
    const Volume<float> d_in = in.to(MemorySpace::Device);
    Volume<float> d_out = poisoned_device(g, whole_box(g), 2);
    gaussian_smooth_adjoint(Context::cuda(stream), d_in.view(), d_out.view(), c.sigma);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const Volume<float> out = d_out.to(MemorySpace::Host);
    EXPECT_EQ(std::memcmp(out.data(), cpu.data(), cpu.bytes()), 0) << c.size.x << "x" << c.size.y << "x" << c.size.z;
  }
  cudaStreamDestroy(stream);
  // Host memory on the cuda backend is refused, as for every op.
  const Geometry g = grid({8, 8, 8});
  Volume<float> a(g), b(g);
  EXPECT_THROW(gaussian_smooth_adjoint(kGpu, a.view(), b.view(), {1.0, 1.0, 1.0}), Error);
}

TEST(PyramidCuda, DownsampleMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const Geometry fine = grid({41, 38, 35}, {0.9, 1.0, 1.3}, true);
  for (double f : {2.0, 3.0}) {
    const Geometry coarse = pyramid_level_geometry(fine, f);
    const Volume<float> in = random_volume(fine, 1, 108);
    const Vec3d sigma = sigma_mm_to_voxels(fine, 0.5 * f);
    Volume<float> cpu(coarse);
    pyramid_downsample(kCpu, in.view(), fine, cpu.view(), coarse, sigma, whole_box(coarse));
    const Volume<float> d_in = in.to(MemorySpace::Device);
    Volume<float> d_out = poisoned_device(coarse, whole_box(coarse), 1);
    pyramid_downsample(kGpu, d_in.view(), fine, d_out.view(), coarse, sigma, whole_box(coarse));
    EXPECT_LT(compare_owned(d_out.to(MemorySpace::Host), cpu, whole_box(coarse)), 1e-5)
        << "factor " << f;
  }
}

TEST(PyramidCuda, UpsampleFieldMatchesCpuAndStitches) {
  REQUIRE_CUDA_DEVICE();
  const Geometry fine = grid({36, 33, 30}, {1.0, 1.0, 1.5}, true);
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  const Volume<float> u = random_volume(coarse, 3, 109, -3.0f, 3.0f);
  Volume<float> cpu(fine, 3);
  pyramid_upsample_field(kCpu, u.view(), coarse, cpu.view(), fine, whole_box(fine));
  const Volume<float> d_u = u.to(MemorySpace::Device);
  Volume<float> d_out = poisoned_device(fine, whole_box(fine), 3);
  pyramid_upsample_field(kGpu, d_u.view(), coarse, d_out.view(), fine, whole_box(fine));
  const Volume<float> whole = d_out.to(MemorySpace::Host);
  EXPECT_LT(compare_owned(whole, cpu, whole_box(fine)), 1e-5);
  for (const Box& owned : {Box{{0, 0, 0}, {36, 33, 11}}, Box{{0, 0, 11}, {36, 33, 10}},
                           Box{{0, 0, 21}, {36, 33, 9}}}) {
    const Volume<float> shard = crop(u, resample_source_box(coarse, fine, owned)).to(MemorySpace::Device);
    Volume<float> d_slab = poisoned_device(fine, whole_box(fine), 3);
    pyramid_upsample_field(kGpu, shard.view(), coarse, d_slab.view(), fine, owned);
    const Volume<float> slab = d_slab.to(MemorySpace::Host);
    EXPECT_TRUE(bitwise_equal_on(slab, whole, owned)) << "slab at z " << owned.lo.z;
    EXPECT_LT(compare_owned(slab, whole, owned), 1e-30);
  }
}

// In place on the GPU (a z pass into scratch, the fused y-x pass or single passes back into the
// input, chunks pipelined one ahead), whole volumes and a slab with its halo, many chunks: bitwise
// the GPU's out-of-place result, which matches the CPU (above); the halo keeps its input.
TEST(GaussianSmoothCuda, InPlaceIsBitwiseTheOutOfPlaceResult) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({70, 44, 52}, {1.0, 0.9, 1.2});
  const Volume<float> in = random_volume(g, 3, 131, -2.0f, 2.0f);
  const Vec3d sigmas[] = {{1.5, 1.5, 1.5}, {1.1, 0.0, 2.0}, {0.8, 1.3, 0.0}, {0.0, 0.0, 1.7},
                          {2.0, 6.0, 9.0}};
  const Box slab{{0, 0, 20}, {70, 44, 16}};
  for (const Vec3d& sigma : sigmas)
    for (const Box& owned : {whole_box(g), slab}) {
      const Box in_box = smoothing_input_box(owned, g.size, sigma);
      const Volume<float> shard = crop(in, in_box);
      const Volume<float> d_in = shard.to(MemorySpace::Device);
      Volume<float> d_ref = poisoned_device(g, in_box, 3);
      gaussian_smooth(kGpu, d_in.view(), d_ref.view(), sigma, owned);
      const Volume<float> ref = d_ref.to(MemorySpace::Host);
      for (index_t chunk : {index_t(70 * 44), index_t(70 * 44 * 5), index_t(1) << 30}) {
        Volume<float> d_work = shard.to(MemorySpace::Device);
        gaussian_smooth_chunked(kGpu, d_work.view(), d_work.view(), sigma, owned, 3.0, chunk);
        const Volume<float> work = d_work.to(MemorySpace::Host);
        EXPECT_TRUE(bitwise_equal_on(work, ref, owned))
            << "sigma " << sigma.x << "," << sigma.y << "," << sigma.z << " chunk " << chunk
            << " owned z " << owned.lo.z;
        for (int c = 0; c < 3; ++c)
          for (index_t k = in_box.lo.z; k < in_box.hi().z; ++k)
            for (index_t j = in_box.lo.y; j < in_box.hi().y; ++j)
              for (index_t i = in_box.lo.x; i < in_box.hi().x; ++i)
                if (!owned.contains(i, j, k)) {
                  ASSERT_EQ(work(i, j, k, c), shard(i, j, k, c));
                }
      }
    }
}
