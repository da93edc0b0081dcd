// Whole registrations sharded over the ranks of the job (dist::ShardPartition, MPI on the CPU)
// against the same registration in one process: the affine, every level's loss trace and the
// output fields and images bitwise equal (P = 1 is the invariant "one rank is the single
// process"). And the communication of an iteration depends on the slab's face, not its volume.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <string>

#include "gigareg/distributed/partition.hpp"
#include "gigareg/io.hpp"
#include "gigareg/qc.hpp"
#include "gigareg/registration.hpp"
#include "result_digest.hpp"
#include "mpi_test.hpp"
#include "test_util.hpp"

namespace gigareg::dist {
namespace {

using gigareg::test::bitwise_equal;
using gigareg::test::centered_like;
using gigareg::test::oblique_geometry;
using gigareg::test::rotation;
using gigareg::test::textured;
using test::agree;
using test::world;

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool same_affine(const Affined& a, const Affined& b) {
  for (int i = 0; i < 9; ++i)
    if (!same_bits(a.matrix.m[i], b.matrix.m[i])) return false;
  return same_bits(a.offset.x, b.offset.x) && same_bits(a.offset.y, b.offset.y) &&
         same_bits(a.offset.z, b.offset.z);
}

bool same_volume(const Volume<float>& a, const Volume<float>& b) {
  if (a.empty() || b.empty()) return a.empty() && b.empty();
  return a.box() == b.box() && a.components() == b.components() && bitwise_equal(a, b, a.box());
}

/// Every rank: the sharded result equals the single-process one (volumes on rank 0 only).
void expect_same_result(const RegistrationResult& sharded, const RegistrationResult& single) {
  const int rank = world().rank();
  EXPECT_ALL_RANKS(same_affine(sharded.affine, single.affine));
  bool levels = sharded.levels.size() == single.levels.size();
  for (std::size_t i = 0; levels && i < single.levels.size(); ++i) {
    const LevelReport &a = sharded.levels[i], &b = single.levels[i];
    levels = a.iterations == b.iterations && a.converged == b.converged &&
             same_bits(a.initial_loss, b.initial_loss) && same_bits(a.final_loss, b.final_loss);
  }
  EXPECT_ALL_RANKS(levels);
  if (!levels && rank == 0)
    for (std::size_t i = 0; i < std::min(sharded.levels.size(), single.levels.size()); ++i)
      std::printf("  stage %d level %d: %d iterations, loss %.17g -> %.17g (one process: %d, %.17g -> %.17g)\n",
                  single.levels[i].stage + 1, single.levels[i].level + 1, sharded.levels[i].iterations,
                  sharded.levels[i].initial_loss, sharded.levels[i].final_loss, single.levels[i].iterations,
                  single.levels[i].initial_loss, single.levels[i].final_loss);
  // The volumes are on rank 0; the other ranks must get none. Each rank decides locally, then
  // all agree (every rank makes the same collective calls).
  const bool volumes = rank == 0 ? same_volume(sharded.warp, single.warp) &&
                                       same_volume(sharded.inverse_warp, single.inverse_warp) &&
                                       same_volume(sharded.warped, single.warped) &&
                                       same_bits(sharded.inverse_residual_mm, single.inverse_residual_mm)
                                 : sharded.warp.empty() && sharded.inverse_warp.empty() &&
                                       sharded.warped.empty();
  EXPECT_ALL_RANKS(volumes);
}

StageParams stage(TransformType t, MetricType m, std::vector<int> iterations,
                  std::vector<double> shrink, std::vector<double> sigmas) {
  StageParams s;
  s.transform = t;
  s.metric.type = m;
  s.convergence.iterations = std::move(iterations);
  s.convergence.window = 4;
  s.shrink_factors = std::move(shrink);
  s.smoothing_sigmas = std::move(sigmas);
  return s;
}

TEST(ShardedRegistration, SyntheticPairOnDifferentGridsIsTheSingleProcessBitwise) {
  // Fixed and moving on different oblique grids; masks on both (the moving one is sampled
  // through the transform every iteration); every metric; greedy with and without field
  // smoothing; moments initialisation.
  const Geometry fg = oblique_geometry({34, 30, 40});
  const Geometry mg = centered_like(fg, {30, 34, 30}, {1.2, 1.0, 1.3}, rotation(-0.1, 0.05, 0.2));
  const Volume<float> fixed = textured(fg, 11, 2.0);
  const Volume<float> moving = textured(mg, 12, 2.0);
  Volume<float> fixed_mask(fg), moving_mask(mg);
  for (index_t k = 0; k < fg.size.z; ++k)
    for (index_t j = 0; j < fg.size.y; ++j)
      for (index_t i = 0; i < fg.size.x; ++i) fixed_mask(i, j, k) = (i + j + k) % 17 == 0 ? 0.0f : 1.0f;
  for (index_t k = 0; k < mg.size.z; ++k)
    for (index_t j = 0; j < mg.size.y; ++j)
      for (index_t i = 0; i < mg.size.x; ++i) {
        const double r2 = std::pow(i - 15.0, 2) + std::pow(j - 17.0, 2) + std::pow(k - 15.0, 2);
        moving_mask(i, j, k) = r2 < 15.0 * 15.0 ? 1.0f : 0.0f;
      }
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::Moments;
  p.stages.push_back(stage(TransformType::Rigid, MetricType::MI, {6, 4}, {2, 1}, {1, 0}));
  p.stages.push_back(stage(TransformType::Affine, MetricType::MeanSquares, {4}, {1}, {0}));
  StageParams greedy = stage(TransformType::Greedy, MetricType::CC, {5, 4}, {2, 1}, {1, 0});
  greedy.step = 0.5;
  p.stages.push_back(greedy);
  StageParams greedy2 = stage(TransformType::Greedy, MetricType::MI, {3}, {1}, {0});
  greedy2.field_sigma = 0.0;
  p.stages.push_back(greedy2);

  const RegistrationResult single = register_images(p, fixed, moving, &fixed_mask, &moving_mask);
  ShardPartition part(world());
  const RegistrationResult sharded =
      register_images(p, fixed, moving, &fixed_mask, &moving_mask, &part);
  expect_same_result(sharded, single);
  if (part.rank() == 0) {
    gigareg::test::record_result_digest(single, "single");
    gigareg::test::record_result_digest(sharded, "sharded " + std::to_string(part.size()));
  }
}

TEST(ShardedRegistration, WinsorizedAndHistogramMatchedIsTheSingleProcessBitwise) {
  // ANTs' intensity preprocessing takes quantiles and means over whole images: every rank must
  // find the single process's windows and matching map from its own planes.
  const Geometry fg = oblique_geometry({30, 26, 37});
  const Geometry mg = centered_like(fg, {28, 30, 27}, {1.1, 1.0, 1.2}, rotation(0.08, -0.05, 0.1));
  const Volume<float> fixed = textured(fg, 21, 2.0);
  Volume<float> moving = textured(mg, 22, 2.0);
  for (index_t e = 0; e < moving.voxel_count(); ++e)  // another histogram, not only a scale
    moving.data()[e] = float(std::pow(std::abs(double(moving.data()[e])), 1.7));
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::CenterOfMass;
  p.stages.push_back(stage(TransformType::Affine, MetricType::MeanSquares, {4, 3}, {2, 1}, {1, 0}));
  p.stages.push_back(stage(TransformType::Greedy, MetricType::CC, {4}, {1}, {0}));
  p.intensities.lower_quantile = 0.02;
  p.intensities.upper_quantile = 0.97;
  p.intensities.histogram_matching = true;
  const RegistrationResult single = register_images(p, fixed, moving);
  ShardPartition part(world());
  expect_same_result(register_images(p, fixed, moving, nullptr, nullptr, &part), single);
  // The preprocessing changed what the metrics saw (a test that cannot fail would not).
  RegistrationParams plain = p;
  plain.intensities = IntensityPreprocessing{};
  const RegistrationResult unprocessed = register_images(plain, fixed, moving);
  EXPECT_ALL_RANKS(!same_bits(unprocessed.levels.front().initial_loss, single.levels.front().initial_loss));
}

TEST(ShardedRegistration, QcPictureFromEachRanksPlanesIsTheSingleProcessBitwise) {
  // An oblique grid (the physical planes cut every z) with a zero background (left out of the
  // windows) and more voxels than the window's subsample (a stride of 2 over the raster order).
  const Geometry g = oblique_geometry({160, 130, 200});
  Volume<float> fixed = textured(g, 31, 2.0), warped = textured(g, 32, -1.0);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < 10; ++j)
      for (index_t i = 0; i < g.size.x; ++i) fixed(i, j, k) = warped(i, j, k) = 0.0f;
  const QcPicture single = make_qc_picture(fixed, warped);
  ShardPartition part(world());
  Box planes = part.owned(g.size);
  if (planes.hi().z < g.size.z) ++planes.size.z;  // the plane above: the upper trilinear tap
  const QcPicture sharded = make_qc_picture(gigareg::test::copy_box(fixed, planes),
                                            gigareg::test::copy_box(warped, planes), QcOptions{}, part);
  EXPECT_ALL_RANKS(sharded.width == single.width && sharded.height == single.height &&
                   sharded.pixels == single.pixels);
}

TEST(ShardedRegistration, RealPairMomentsAffineGreedyIsTheSingleProcessBitwise) {
  const std::string dir = std::string(GIGAREG_SHARED_DATA) + "/templates/";
  const std::string f = dir + "fsl_MNI152_T1_2mm.nii.gz", m = dir + "icbm2009_asym_t1_1mm_cropped.nii.gz";
  if (!std::filesystem::exists(f) || !std::filesystem::exists(m))
    GTEST_SKIP() << "real data not found under " << dir;
  const Image fixed = read_image(f), moving = read_image(m);
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::Moments;
  p.stages.push_back(stage(TransformType::Affine, MetricType::MI, {15, 8}, {2, 1}, {1, 0}));
  StageParams greedy = stage(TransformType::Greedy, MetricType::CC, {8, 4}, {2, 1}, {1, 0});
  greedy.step = 0.25;
  greedy.gradient_sigma = 2.0;
  greedy.field_sigma = 1.0;
  p.stages.push_back(greedy);
  const RegistrationResult single = register_images(p, fixed.voxels, moving.voxels);
  ShardPartition part(world());
  const RegistrationResult sharded =
      register_images(p, fixed.voxels, moving.voxels, nullptr, nullptr, &part);
  expect_same_result(sharded, single);
  if (part.rank() == 0) {
    gigareg::test::record_result_digest(single, "single");
    gigareg::test::record_result_digest(sharded, "sharded " + std::to_string(part.size()));
  }
}

using gigareg::test::bytes_read_so_far;

TEST(ShardedRegistration, EachRankReadsOnlyItsPlanes) {
  // The inputs as uncompressed NIfTI files; every rank reads the planes registration_input_planes
  // names (its fixed planes with halos, its own moving slab) and nothing else, and the result is
  // the single-process one.
  const Geometry fg = gigareg::test::make_geometry({40, 36, 96}, {1.0, 1.1, 0.9}, {-20, -18, -40});
  const Geometry mg = centered_like(fg, {38, 40, 88}, {1.05, 1.0, 1.0}, rotation(0.05, -0.04, 0.1));
  const Volume<float> fixed = textured(fg, 31, 3.0), moving = textured(mg, 32, 3.0);
  const std::string dir = std::filesystem::temp_directory_path().string() + "/gigareg-dist-planes";
  if (world().rank() == 0) {
    std::filesystem::create_directories(dir);
    write_image(dir + "/f.nii", fixed, PixelType::Float32);
    write_image(dir + "/m.nii", moving, PixelType::Float32);
  }
  world().barrier();
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::Moments;
  p.stages.push_back(stage(TransformType::Affine, MetricType::MI, {5, 3}, {2, 1}, {1, 0}));
  p.stages.push_back(stage(TransformType::Greedy, MetricType::CC, {4, 3}, {2, 1}, {1, 0}));
  ShardPartition part(world());
  const InputPlanes planes = registration_input_planes(p, fg, mg, part);
  const std::uint64_t before = bytes_read_so_far();
  const Image f = read_image_slab(dir + "/f.nii", planes.fixed.lo.z, planes.fixed.size.z);
  const Image m = read_image_slab(dir + "/m.nii", planes.moving.lo.z, planes.moving.size.z);
  const std::uint64_t read = bytes_read_so_far() - before;
  const std::uint64_t slabs = std::uint64_t(planes.fixed.voxel_count() + planes.moving.voxel_count()) * 4;
  const std::uint64_t files = std::uint64_t(fg.voxel_count() + mg.voxel_count()) * 4;
  if (world().rank() == 0)
    std::printf("[ info ] P=%d, rank 0: read %llu bytes for planes of %llu bytes (whole files %llu)\n",
                world().size(), static_cast<unsigned long long>(read),
                static_cast<unsigned long long>(slabs), static_cast<unsigned long long>(files));
  EXPECT_ALL_RANKS(read >= slabs && read <= slabs + 256 * 1024);
  if (world().size() > 2) {
    EXPECT_ALL_RANKS(read < files / 2);
  }
  // The reference reads the whole files (their geometry went through NIfTI's float header).
  const RegistrationResult single =
      register_images(p, read_image(dir + "/f.nii").voxels, read_image(dir + "/m.nii").voxels);
  const RegistrationResult sharded = register_images(p, f.voxels, m.voxels, nullptr, nullptr, &part);
  expect_same_result(sharded, single);
  if (part.rank() == 0) {
    gigareg::test::record_result_digest(single, "single");
    gigareg::test::record_result_digest(sharded, "sharded " + std::to_string(part.size()));
  }
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(dir);
}

/// Bytes this rank sends during `iterations` greedy CC iterations on one level of a pair of
/// nz slices (a fixed cost for the set-up and the outputs included).
std::uint64_t greedy_bytes(index_t nz, int iterations) {
  const Geometry g = gigareg::test::make_geometry({24, 20, nz}, {1.0, 1.0, 1.0});
  const Volume<float> fixed = textured(g, 21, 2.0), moving = textured(g, 22, 2.0);
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.compute_inverse = false;
  StageParams s = stage(TransformType::Greedy, MetricType::CC, {iterations}, {1}, {0});
  s.convergence.window = 100;  // no early stop
  p.stages.push_back(s);
  ShardPartition part(world());
  (void)register_images(p, fixed, moving, nullptr, nullptr, &part);
  return part.bytes_sent();
}

TEST(ShardedRegistration, BytesPerIterationDoNotGrowWithTheSlabThickness) {
  const int ranks = world().size();
  const index_t thin = 12 * ranks, thick = 24 * ranks;
  const std::uint64_t per_thin = (greedy_bytes(thin, 6) - greedy_bytes(thin, 2)) / 4;
  const std::uint64_t per_thick = (greedy_bytes(thick, 6) - greedy_bytes(thick, 2)) / 4;
  if (world().rank() == 0)
    std::printf("[ info ] P=%d: bytes sent per greedy CC iteration by rank 0: %llu (nz %lld), %llu (nz %lld)\n",
                ranks, static_cast<unsigned long long>(per_thin), static_cast<long long>(thin),
                static_cast<unsigned long long>(per_thick), static_cast<long long>(thick));
  EXPECT_ALL_RANKS(per_thin == per_thick);
  if (ranks == 1) {
    EXPECT_ALL_RANKS(per_thin == 0);
  } else {
    // Rank 0 sends one face per iteration: per face voxel, 2r planes of the warped image (CC
    // radius 2) and, for three-component float fields, the gradient's smoothing radius
    // ceil(3 x 2.0), the compositive update's ceil(step 0.1) + 1 and the field smoothing's
    // ceil(3 x 1.0) planes. docs/distributed.md's scale model (benchmarks/scale_model.py) counts
    // the bytes of an iteration with this formula: a change of the halos must show up here.
    const std::uint64_t face = 24 * 20;
    const std::uint64_t model = face * (4 * (2 * 2) + 12 * (6 + 2 + 3));
    if (world().rank() == 0) EXPECT_EQ(per_thin, model);
    EXPECT_ALL_RANKS(per_thin > 0);
  }
}

}  // namespace
}  // namespace gigareg::dist
