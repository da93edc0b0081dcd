// The NCCL communicator and the sharded ops on the CUDA backend (CUDA builds only; skipped on
// every rank when any rank sees no device). Run with one rank per GPU:
//   mpirun -np P dist_tests --gtest_filter='DistNccl*'
// Communicator results are exact (integer-valued and dyadic data), halo exchanges bitwise; the
// registration's sharded path on CUDA is compared with the single-process CPU reference within
// the CUDA ops' stated tolerances (loss 1e-5, gradients 1e-4 normwise), ranges and max-norms
// exactly.

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "gigareg/distributed/halo.hpp"
#include "gigareg/distributed/partition.hpp"
#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/smooth.hpp"
#include "mpi_test.hpp"
#include "registration/halos.hpp"
#include "registration/metric.hpp"
#include "registration/reductions.hpp"
#include "test_util.hpp"

namespace gigareg::dist {
namespace {

using gigareg::test::bitwise_equal;
using gigareg::test::make_geometry;
using gigareg::test::max_rel_error;
using gigareg::test::oblique_geometry;
using gigareg::test::random_smooth_field;
using gigareg::test::random_smooth_volume;
using gigareg::test::random_volume;
using gigareg::test::whole_box;
using test::poisoned_shard;
using test::world;

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();

class DistNccl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Decided by all ranks together: a rank without a device must not leave the others alone in
    // the NCCL bootstrap. NCCL needs one GPU per rank (the CPU tests run more ranks than GPUs).
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    if (world().all(cuda_available() && world().local_size() <= devices))
      nccl_ = make_nccl_communicator(nullptr).release();
  }
  static void TearDownTestSuite() {
    delete nccl_;
    nccl_ = nullptr;
  }
  void SetUp() override {
    if (nccl_ == nullptr) GTEST_SKIP() << "some rank has no GPU of its own";
  }
  static Communicator* nccl_;
};
Communicator* DistNccl::nccl_ = nullptr;

Volume<float> to_host(const Volume<float>& v) { return v.to(MemorySpace::Host); }
Volume<float> to_device(const Volume<float>& v) { return v.to(MemorySpace::Device); }

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

TEST_F(DistNccl, CollectivesAreExactAndInRankOrder) {
  Communicator& c = *nccl_;
  EXPECT_EQ(c.backend(), CommBackend::Nccl);
  EXPECT_EQ(c.memory_space(), MemorySpace::Device);
  EXPECT_EQ(c.size(), world().size());
  EXPECT_EQ(c.rank(), world().rank());
  const int p = c.size(), r = c.rank();
  EXPECT_EQ(c.sum(double(r) + 0.5), double(p) * (p - 1) / 2 + 0.5 * p);
  EXPECT_EQ(c.sum(std::int64_t(1) << 40), (std::int64_t(1) << 40) * p);
  EXPECT_EQ(c.max(double(r)), double(p - 1));
  EXPECT_EQ(c.min(double(r)), 0.0);
  std::vector<double> mine = {double(r), -2.0 * r}, all(2 * std::size_t(p));
  double* d = static_cast<double*>(allocate_bytes(all.size() * sizeof(double), MemorySpace::Device, "t"));
  copy_bytes(d + 2 * r, MemorySpace::Device, mine.data(), MemorySpace::Host, 2 * sizeof(double));
  c.allgather(d + 2 * r, d, 2 * sizeof(double));  // in place: rank r's block is its send buffer
  c.synchronize();
  copy_bytes(all.data(), MemorySpace::Host, d, MemorySpace::Device, all.size() * sizeof(double));
  free_bytes(d, MemorySpace::Device);
  bool ok = true;
  for (int q = 0; q < p; ++q) ok = ok && all[2 * q] == q && all[2 * q + 1] == -2.0 * q;
  EXPECT_ALL_RANKS(ok);
  c.barrier();
}

TEST_F(DistNccl, DeviceHaloExchangeAndGatherBitwise) {
  Communicator& c = *nccl_;
  const Geometry g = make_geometry({21, 17, 4 * index_t(c.size()) + 3});
  const Decomposition d = Decomposition::slabs(g.size, c.size());
  const Volume<float> whole = random_volume(g, 7, -2, 2, 3);
  for (index_t h : {1, 2, 6}) {
    const Box box = d.halo_box(c.rank(), {0, 0, h});
    Volume<float> shard = to_device(poisoned_shard(whole, box, d.owned(c.rank())));
    exchange_halo(c, d, shard, {0, 0, h});
    c.synchronize();
    EXPECT_ALL_RANKS(bitwise_equal(to_host(shard), whole, box));
  }
  const Volume<float> mine = to_device(poisoned_shard(whole, d.owned(c.rank()), d.owned(c.rank())));
  const Volume<float> gathered = gather_to_root(c, d, mine, 0);
  EXPECT_ALL_RANKS(c.rank() != 0 || bitwise_equal(to_host(gathered), whole, whole.box()));
}

/// The registration's sharded path on CUDA: a ShardPartition over NCCL fills the halos and
/// combines the global numbers; reg::Metric, reg::global_range and reg::global_max_norm as
/// register_images calls them. Compared with one CPU process.
TEST_F(DistNccl, ShardedCudaPathMatchesTheCpuReference) {
  const ShardPartition part(*nccl_);
  const Geometry g = oblique_geometry({40, 36, 48});
  const Box own = part.owned(g.size);
  const Volume<float> fixed = random_smooth_volume(g, 81, 1.0, 0.2, 2.0);
  Volume<float> warped = random_smooth_volume(g, 82, 1.0, -0.1, 2.0);
  const Volume<float> noise = random_volume(g, 83, -0.2, 0.2);
  for (index_t e = 0; e < g.voxel_count(); ++e)
    warped.data()[e] = 0.7f * fixed.data()[e] + 0.5f * warped.data()[e] + noise.data()[e];
  const Volume<float> mask = random_smooth_volume(g, 84, 1.0, 0.6);
  // A device shard of `whole` with `halo` around the owned slab, filled by the partition.
  auto device_shard = [&](const Volume<float>& whole, Index3 halo) {
    Volume<float> v = to_device(poisoned_shard(whole, part.halo_box(g.size, halo), own));
    part.exchange_halos({&v}, halo);
    return v;
  };

  // CC with a mask, then MI: histogram-exact ranges, value and gradient within tolerance.
  MetricParams cc, mi;
  cc.type = MetricType::CC;
  cc.radius = 2;
  mi.type = MetricType::MI;
  for (const MetricParams& m : {cc, mi}) {
    const bool use_mask = m.type == MetricType::CC;
    const IntensityRange fr1 = reg::global_range(kCpu, single_process(), fixed.view(),
                                                 use_mask ? mask.view() : VolumeView<const float>{}, whole_box(g));
    const IntensityRange wr1 = reg::global_range(kCpu, single_process(), warped.view(), {}, whole_box(g));
    Volume<float> w1 = poisoned_shard(warped, whole_box(g), whole_box(g));
    Volume<float> ref_grad(g);
    reg::Metric one(kCpu, single_process(), m, g, whole_box(g), fr1, wr1);
    one.launch(fixed.view(), w1, use_mask ? mask.view() : VolumeView<const float>{}, ref_grad.view());
    const LossValue ref = one.value();

    const Index3 image_halo = reg::metric_image_halo(m);
    const Volume<float> f = device_shard(fixed, image_halo);
    const Volume<float> mk = device_shard(mask, reg::metric_mask_halo(m));
    const VolumeView<const float> mv = use_mask ? mk.view() : VolumeView<const float>{};
    const Volume<float> wo = to_device(extract_box(warped, own));
    const IntensityRange fr = reg::global_range(kGpu, part, f.view(), mv, own);
    const IntensityRange wr = reg::global_range(kGpu, part, wo.view(), {}, own);
    EXPECT_ALL_RANKS(fr.min == fr1.min && fr.max == fr1.max && wr.min == wr1.min && wr.max == wr1.max);
    reg::Metric sharded(kGpu, part, m, g, own, fr, wr);
    Volume<float> w = to_device(poisoned_shard(warped, part.halo_box(g.size, image_halo), own));
    Volume<float> grad(g, own, 1, MemorySpace::Device);
    sharded.launch(f.view(), w, mv, grad.view());
    const LossValue v = sharded.value();
    EXPECT_ALL_RANKS(rel(v.value(), ref.value()) < 1e-5 && v.count == ref.count);
    EXPECT_ALL_RANKS(max_rel_error(to_host(grad), ref_grad, own) < 1e-4);
  }

  // Smoothing a field, then the compositive update with the displacement's halo.
  const Volume<float> u = random_smooth_field(g, 85, 2.0, 2.0), vfield = random_smooth_field(g, 86, 3.0, 2.0);
  const Vec3d sigma{1.0, 1.0, 1.0};
  Volume<float> ref_s(g, 3);
  gigareg::gaussian_smooth(kCpu, u.view(), ref_s.view(), sigma, whole_box(g));
  const Volume<float> us = device_shard(u, gaussian_radii(sigma));
  Volume<float> smoothed(g, own, 3, MemorySpace::Device);
  gigareg::gaussian_smooth(kGpu, us.view(), smoothed.view(), sigma, own);
  EXPECT_ALL_RANKS(max_rel_error(to_host(smoothed), ref_s, own) < 1e-5);
  Volume<float> ref_c(g, 3);
  gigareg::compose_fields(kCpu, vfield.view(), g, u.view(), g, ref_c.view(), whole_box(g));
  const Volume<float> vo = to_device(extract_box(vfield, own));
  const double bound = reg::global_max_norm(kGpu, part, vo, own);
  EXPECT_ALL_RANKS(bound == reg::global_max_norm(kCpu, single_process(), vfield, whole_box(g)));
  const Volume<float> uh = device_shard(u, reg::displacement_halo(g, bound));
  Volume<float> composed(g, own, 3, MemorySpace::Device);
  gigareg::compose_fields(kGpu, vo.view(), g, uh.view(), g, composed.view(), own);
  EXPECT_ALL_RANKS(max_rel_error(to_host(composed), ref_c, own) < 1e-5);
}

}  // namespace
}  // namespace gigareg::dist
