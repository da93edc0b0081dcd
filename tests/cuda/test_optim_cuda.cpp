// Optimiser ops on CUDA against the CPU reference, on fresh random inputs: Adam (fused, with and
// without a device scale, Write and Add; unfused pieces) within 1e-5 relative, the max-norm
// partials and their reductions exactly, NaN-poisoned outputs so that exactly the owned voxels
// must be written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gigareg/memory.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/volume.hpp"

using namespace gigareg;

namespace {

#define REQUIRE_CUDA_DEVICE() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Geometry grid(Index3 size) {
  Geometry g;
  g.size = size;
  g.spacing = {0.9, 1.0, 1.1};
  return g;
}

Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

Volume<float> random_volume(const Geometry& g, int components, unsigned seed, float lo, float hi) {
  Volume<float> v(g, components);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = d(rng);
  return v;
}

Volume<float> dev(const Volume<float>& h) { return h.to(MemorySpace::Device); }
Volume<float> host(const Volume<float>& d) { return d.to(MemorySpace::Host); }

/// doubles in device memory.
class DeviceDoubles {
 public:
  explicit DeviceDoubles(std::size_t n) : n_(n) {
    p_ = static_cast<double*>(allocate_bytes(n * sizeof(double), MemorySpace::Device, "test"));
  }
  ~DeviceDoubles() { free_bytes(p_, MemorySpace::Device); }
  DeviceDoubles(const DeviceDoubles&) = delete;
  DeviceDoubles& operator=(const DeviceDoubles&) = delete;
  double* get() const { return p_; }
  void set(const std::vector<double>& v) {
    copy_bytes(p_, MemorySpace::Device, v.data(), MemorySpace::Host, v.size() * sizeof(double));
  }
  std::vector<double> get_host() const {
    std::vector<double> v(n_);
    copy_bytes(v.data(), MemorySpace::Host, p_, MemorySpace::Device, n_ * sizeof(double));
    return v;
  }

 private:
  std::size_t n_;
  double* p_;
};

/// Worst relative difference on `owned` (floor for elements near zero); outside owned the GPU
/// result must equal `outside` (NaN poison or the untouched input) bitwise.
double compare(const Volume<float>& gpu, const Volume<float>& cpu, const Box& owned,
               const Volume<float>* outside, double floor = 1e-4) {
  double worst = 0.0;
  const Geometry& g = gpu.geometry();
  for (int c = 0; c < gpu.components(); ++c)
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const float x = gpu(i, j, k, c);
          if (!owned.contains(i, j, k)) {
            const bool same = outside == nullptr
                                  ? std::isnan(x)
                                  : std::memcmp(&x, &(*outside)(i, j, k, c), sizeof x) == 0;
            EXPECT_TRUE(same) << "changed outside owned at " << i << "," << j << "," << k;
            if (!same) return 1e30;
            continue;
          }
          if (std::isnan(x)) {
            ADD_FAILURE() << "owned voxel not written at " << i << "," << j << "," << k;
            return 1e30;
          }
          const double r = cpu(i, j, k, c);
          worst = std::max(worst, std::abs(double(x) - r) / std::max(std::abs(r), floor));
        }
  return worst;
}

struct AdamInputs {
  Volume<float> grad, m, v, u;
};

AdamInputs make_inputs(const Geometry& g, unsigned seed) {
  return {random_volume(g, 3, seed, -2.0f, 2.0f), random_volume(g, 3, seed + 1, -0.5f, 0.5f),
          random_volume(g, 3, seed + 2, 0.01f, 1.0f), random_volume(g, 3, seed + 3, -4.0f, 4.0f)};
}

}  // namespace

TEST(AdamCuda, FusedUpdateMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({37, 30, 26});
  const Box owned{{3, 2, 4}, {30, 25, 19}};
  AdamParams p;
  p.learning_rate = 0.07;
  p.step = 5;
  for (int variant = 0; variant < 4; ++variant) {
    const bool add = variant & 1, scaled = variant & 2;
    const AdamInputs in = make_inputs(g, 200 + unsigned(variant) * 10);
    const double scale = 0.4375;
    // CPU reference.
    Volume<float> m = in.m.clone(), v = in.v.clone(), out = add ? in.u.clone() : Volume<float>(g, 3);
    if (!add) out.fill(kNaN);
    adam_update(kCpu, in.grad.view(), m.view(), v.view(), out.view(), p, owned,
                add ? StepOutput::Add : StepOutput::Write, scaled ? &scale : nullptr);
    // GPU, outputs poisoned where they are write-only.
    DeviceDoubles d_scale(1);
    d_scale.set({scale});
    Volume<float> dm = dev(in.m), dv = dev(in.v);
    Volume<float> dout;
    if (add) {
      dout = dev(in.u);
    } else {
      Volume<float> poison(g, 3);
      poison.fill(kNaN);
      dout = dev(poison);
    }
    adam_update(kGpu, dev(in.grad).view(), dm.view(), dv.view(), dout.view(), p, owned,
                add ? StepOutput::Add : StepOutput::Write, scaled ? d_scale.get() : nullptr);
    EXPECT_LT(compare(host(dm), m, owned, &in.m), 1e-5) << "m, variant " << variant;
    EXPECT_LT(compare(host(dv), v, owned, &in.v), 1e-5) << "v, variant " << variant;
    EXPECT_LT(compare(host(dout), out, owned, add ? &in.u : nullptr), 1e-5) << "out, variant " << variant;
  }
}

TEST(AdamCuda, UnfusedPiecesMatchCpu) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({33, 21, 17});
  const Box owned = whole_box(g);
  const AdamInputs in = make_inputs(g, 300);
  AdamParams p;
  p.learning_rate = 0.01;
  p.beta1 = 0.8;
  p.beta2 = 0.99;
  p.eps = 1e-6;
  p.step = 2;
  Volume<float> m = in.m.clone(), v = in.v.clone(), step(g, 3);
  adam_moments(kCpu, in.grad.view(), m.view(), v.view(), p, owned);
  adam_step(kCpu, m.view(), v.view(), step.view(), p, owned);
  const double scale = -1.75;
  Volume<float> scaled = step.clone();
  scale_field(kCpu, scaled.view(), &scale, owned);

  Volume<float> dm = dev(in.m), dv = dev(in.v), dstep = dev(in.u);
  adam_moments(kGpu, dev(in.grad).view(), dm.view(), dv.view(), p, owned);
  adam_step(kGpu, dm.view(), dv.view(), dstep.view(), p, owned);
  EXPECT_LT(compare(host(dm), m, owned, nullptr), 1e-5);
  EXPECT_LT(compare(host(dv), v, owned, nullptr), 1e-5);
  EXPECT_LT(compare(host(dstep), step, owned, nullptr), 1e-5);
  DeviceDoubles d_scale(1);
  d_scale.set({scale});
  scale_field(kGpu, dstep.view(), d_scale.get(), owned);
  EXPECT_LT(compare(host(dstep), scaled, owned, nullptr), 1e-5);
}

TEST(MaxNormCuda, PartialsAndReductionsAreExact) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({48, 40, 33});
  for (const Box& owned : {whole_box(g), Box{{5, 9, 3}, {40, 17, 21}}}) {
    Volume<float> f = random_volume(g, 3, 400, -3.0f, 3.0f);
    // One voxel in owned stands out, so the slices differ in where their max lies.
    f(owned.lo.x + 7, owned.lo.y + 3, owned.lo.z + 2, 1) = 9.5f;
    const index_t nz = owned.size.z;
    std::vector<double> cpu(std::size_t(nz), -1.0);
    max_norm_partials(kCpu, f.view(), owned, SlicePartials{cpu.data(), nz, 1});

    DeviceDoubles d_part{static_cast<std::size_t>(nz)};
    d_part.set(std::vector<double>(std::size_t(nz), 123.0));  // stale values must be overwritten
    const Volume<float> d_f = dev(f);
    const SlicePartials sp{d_part.get(), nz, 1};
    max_norm_partials(kGpu, d_f.view(), owned, sp);
    const std::vector<double> gpu = d_part.get_host();
    for (index_t s = 0; s < nz; ++s) EXPECT_EQ(gpu[std::size_t(s)], cpu[std::size_t(s)]) << "slice " << s;

    const double cpu_max = reduce_slices_max(kCpu, SlicePartials{cpu.data(), nz, 1});
    EXPECT_EQ(reduce_slices_max(kGpu, sp), cpu_max);
    DeviceDoubles d_res(2);
    reduce_slices_max_device(kGpu, sp, d_res.get());
    max_norm_scale_device(kGpu, sp, 0.5, 1.0, d_res.get() + 1);
    const std::vector<double> res = d_res.get_host();
    EXPECT_EQ(res[0], cpu_max);
    double cpu_scale = 0.0;
    max_norm_scale_device(kCpu, SlicePartials{cpu.data(), nz, 1}, 0.5, 1.0, &cpu_scale);
    EXPECT_EQ(res[1], cpu_scale);
  }
}

TEST(MaxNormCuda, NormaliserOnDeviceFeedsTheFusedStepWithoutHostSync) {
  REQUIRE_CUDA_DEVICE();
  // The intended use: max-norm of the gradient -> scale on the device -> fused Adam step.
  const Geometry g = grid({29, 23, 19});
  const Box owned = whole_box(g);
  const AdamInputs in = make_inputs(g, 500);
  AdamParams p;
  p.learning_rate = 0.2;
  // CPU chain.
  std::vector<double> part(std::size_t(g.size.z));
  max_norm_partials(kCpu, in.grad.view(), owned, SlicePartials{part.data(), g.size.z, 1});
  double scale = 0.0;
  max_norm_scale_device(kCpu, SlicePartials{part.data(), g.size.z, 1}, 1.0, 1e-12, &scale);
  Volume<float> m = in.m.clone(), v = in.v.clone(), u = in.u.clone();
  adam_update(kCpu, in.grad.view(), m.view(), v.view(), u.view(), p, owned, StepOutput::Add, &scale);
  // GPU chain, no host round trip in between.
  DeviceDoubles d_part{static_cast<std::size_t>(g.size.z)}, d_scale{1};
  const Volume<float> d_grad = dev(in.grad);
  Volume<float> dm = dev(in.m), dv = dev(in.v), du = dev(in.u);
  const SlicePartials sp{d_part.get(), g.size.z, 1};
  max_norm_partials(kGpu, d_grad.view(), owned, sp);
  max_norm_scale_device(kGpu, sp, 1.0, 1e-12, d_scale.get());
  adam_update(kGpu, d_grad.view(), dm.view(), dv.view(), du.view(), p, owned, StepOutput::Add,
              d_scale.get());
  EXPECT_EQ(d_scale.get_host()[0], scale);
  EXPECT_LT(compare(host(du), u, owned, nullptr), 1e-5);
}

// bfloat16 moments and the step written over the gradient: the same float operations on both
// backends and the same integer rounding, so the GPU agrees with the CPU bitwise.
TEST(AdamCuda, Bfloat16MomentsAndInPlaceStepMatchCpuBitwise) {
  REQUIRE_CUDA_DEVICE();
  const Geometry g = grid({41, 29, 23});
  const Box owned{{2, 3, 1}, {36, 24, 20}};
  AdamParams p;
  p.learning_rate = 1.0;
  p.beta2 = 0.99;
  p.eps = 0.1;
  const double scale = 0.8125;
  const AdamInputs in = make_inputs(g, 400);
  auto to_bf16 = [&](const Volume<float>& x) {
    Volume<bfloat16> out(g, 3);
    for (index_t e = 0; e < x.element_count(); ++e) out.data()[e] = to_bfloat16(x.data()[e]);
    return out;
  };
  Volume<bfloat16> m = to_bf16(in.m), v = to_bf16(in.v);
  Volume<bfloat16> dm = m.to(MemorySpace::Device), dv = v.to(MemorySpace::Device);
  Volume<float> work = in.grad.clone(), dwork = dev(in.grad);
  DeviceDoubles d_scale(1);
  d_scale.set({scale});
  for (int t = 1; t <= 3; ++t) {  // three steps, each writing its step over the gradient
    p.step = t;
    adam_update(kCpu, work.view(), m.view(), v.view(), work.view(), p, owned, StepOutput::Write, &scale);
    adam_update(kGpu, dwork.view(), dm.view(), dv.view(), dwork.view(), p, owned, StepOutput::Write,
                d_scale.get());
  }
  const Volume<bfloat16> hm = dm.to(MemorySpace::Host), hv = dv.to(MemorySpace::Host);
  const Volume<float> hwork = host(dwork);
  EXPECT_EQ(std::memcmp(hm.data(), m.data(), m.bytes()), 0);
  EXPECT_EQ(std::memcmp(hv.data(), v.data(), v.bytes()), 0);
  EXPECT_EQ(std::memcmp(hwork.data(), work.data(), work.bytes()), 0);
  // Outside the owned box the gradient is untouched.
  EXPECT_EQ(compare(hwork, work, owned, &in.grad), 0.0);
}
