// The registration pipeline on CUDA against the CPU reference (the same ops on device volumes;
// every test skips without a GPU): the whole pipeline with masks (losses, affine, warp, warped
// image, apply_transforms), the first CC loss on an unaligned pair, recovery of a known warp,
// the time of a 192^3 greedy iteration, and a real brain pair's Dice. The CPU tests of the
// pipeline: tests/unit/test_registration.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gigareg/io.hpp"
#include "gigareg/metrics.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/register_command.hpp"
#include "gigareg/registration.hpp"
#include "registration_test_util.hpp"
#include "result_digest.hpp"

using namespace gigareg;
using namespace gigareg::test;
namespace fs = std::filesystem;

TEST(RegistrationCuda, MatchesTheCpuPipeline) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  const Geometry fg = grid({40, 44, 36}, {2, 2, 2}, {-40, -44, -36});
  const Volume<float> base = blob_phantom(fg, 13);
  const Volume<float> moving = known_transform_of(base, fg, {3, -2, 4}, {1.02, 0.98, 1.0}, {2, -1, 1.5});
  // Masks: everything but a corner slab, to run the mask paths (the moving one goes through the
  // host on CUDA).
  Volume<float> fmask(fg), mmask(fg);
  for (index_t k = 0; k < fg.size.z; ++k)
    for (index_t j = 0; j < fg.size.y; ++j)
      for (index_t i = 0; i < fg.size.x; ++i) {
        fmask(i, j, k) = (i < 3 && j < 3) ? 0.0f : 1.0f;
        mmask(i, j, k) = (k > fg.size.z - 3) ? 0.0f : 1.0f;
      }
  RegistrationParams p;
  p.initial.type = InitialTransformType::CenterOfMass;
  p.stages = {stage(TransformType::Rigid, MetricType::MI, {20, 10}, {2, 1}, {1, 0}, 0.2),
              stage(TransformType::Affine, MetricType::MeanSquares, {20, 10}, {2, 1}, {1, 0}, 0.1),
              registration_preset("greedy").stages.back()};
  p.stages[2].convergence.iterations = {20, 10};
  p.stages[2].shrink_factors = {2, 1};
  p.stages[2].smoothing_sigmas = {1, 0};
  p.device = DeviceChoice::Cpu;
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult cpu = register_images(p, base, moving, &fmask, &mmask);
  test::record_result_digest(cpu, "cpu");
  const double t_cpu = seconds_since(t0);
  p.device = DeviceChoice::Cuda;
  const auto t1 = std::chrono::steady_clock::now();
  const RegistrationResult gpu = register_images(p, base, moving, &fmask, &mmask);
  const double t_gpu = seconds_since(t1);
  EXPECT_EQ(gpu.backend, Backend::Cuda);
  ASSERT_EQ(cpu.levels.size(), gpu.levels.size());
  for (std::size_t l = 0; l < cpu.levels.size(); ++l) {
    const double a = cpu.levels[l].final_loss, b = gpu.levels[l].final_loss;
    EXPECT_NEAR(a, b, 0.02 * std::abs(a) + 1e-3) << "level " << l;
  }
  double dm = 0;
  for (int i = 0; i < 9; ++i) dm = std::max(dm, std::abs(cpu.affine.matrix.m[i] - gpu.affine.matrix.m[i]));
  EXPECT_LT(dm, 5e-3);
  EXPECT_LT(rms_point_error(fg, cpu.affine, gpu.affine), 0.1);
  double du = 0;
  for (index_t i = 0; i < cpu.warp.element_count(); ++i) {
    const double d = double(cpu.warp.data()[i]) - gpu.warp.data()[i];
    du += d * d;
  }
  du = std::sqrt(du / double(cpu.warp.voxel_count()));
  const double mad = mean_abs_diff(cpu.warped, gpu.warped) / intensity_span(cpu.warped);
  std::printf("  CUDA vs CPU pipeline: affine max |dM| %.2e, warp RMS diff %.3f mm, warped mean |diff| "
              "%.2e of the range; %.2f s (cpu) vs %.2f s (cuda)\n", dm, du, mad, t_cpu, t_gpu);
  EXPECT_LT(du, 0.1);
  EXPECT_LT(mad, 0.01);
  EXPECT_LT(gpu.inverse_residual_mm, 0.01);

  // apply_transforms on the device gives the CPU's resampling.
  std::vector<TransformEntry> chain(2);
  chain[0].is_field = true;
  chain[0].field = &cpu.warp;
  chain[1].affine = cpu.affine;
  const Volume<float> a_cpu = apply_transforms(moving, fg, chain, Interpolation::Linear, DeviceChoice::Cpu);
  const Volume<float> a_gpu = apply_transforms(moving, fg, chain, Interpolation::Linear, DeviceChoice::Cuda);
  EXPECT_LT(mean_abs_diff(a_cpu, a_gpu), 1e-5 * intensity_span(a_cpu));
}

TEST(RegistrationCuda, FirstCcLossMatchesTheCpuOnAnUnalignedPair) {
  // The head phantom against itself shifted by 10 mm, no initialisation: the brain's edge lies over
  // the other image's zero background, where CC windows are nearly flat. The first loss of each
  // level is computed at the identity (level 0) or after one step (level 1): the backends must
  // agree on it. (Before the LNCC variance floors the CUDA float sums made such windows correlate:
  // an unaligned brain pair's first loss was -0.693 on CUDA against -0.214 on the CPU.)
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  const Geometry fg = grid({48, 52, 44}, {2, 2, 2}, {-48, -52, -44});
  const Volume<float> base = blob_phantom(fg, 29);
  const Volume<float> moving = warp_image(base, fg, make_affine({0, 0, 0}, {1, 1, 1}, {10, -6, 4}, grid_center(fg)));
  RegistrationParams p;
  p.initial.type = InitialTransformType::Identity;
  p.stages = {registration_preset("greedy").stages.back()};
  p.stages[0].convergence.iterations = {1, 1};
  p.stages[0].shrink_factors = {2, 1};
  p.stages[0].smoothing_sigmas = {1, 0};
  p.device = DeviceChoice::Cpu;
  const RegistrationResult cpu = register_images(p, base, moving);
  test::record_result_digest(cpu, "cpu");
  p.device = DeviceChoice::Cuda;
  const RegistrationResult gpu = register_images(p, base, moving);
  ASSERT_EQ(cpu.levels.size(), 2u);
  ASSERT_EQ(gpu.levels.size(), 2u);
  for (std::size_t l = 0; l < 2; ++l) {
    const double a = cpu.levels[l].initial_loss, b = gpu.levels[l].initial_loss;
    std::printf("  level %zu first CC loss: CPU %.8f, CUDA %.8f\n", l, a, b);
    EXPECT_LT(a, -0.01) << "level " << l;  // some correlation, not the empty mask's 0
    EXPECT_NEAR(b, a, 1e-4 * std::abs(a)) << "level " << l;
  }
  // For the record, not a check: with cc_min_std = 0 (no texture mask, no floors) the float
  // sums of the flat background decide the CUDA value.
  p.stages[0].metric.cc_min_std = 0.0;
  const double open_gpu = register_images(p, base, moving).levels[0].initial_loss;
  p.device = DeviceChoice::Cpu;
  const double open_cpu = register_images(p, base, moving).levels[0].initial_loss;
  std::printf("  cc_min_std 0, level 0 first CC loss: CPU %.8f, CUDA %.8f\n", open_cpu, open_gpu);
}

TEST(RegistrationCuda, SynAndGreedyRecoverAKnownWarp) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  const WarpPhantom w = warp_phantom();
  for (const char* preset : {"greedy", "syn"}) {
    RegistrationParams p;
    p.device = DeviceChoice::Cuda;
    p.stages = {registration_preset(preset).stages.back()};
    p.stages[0].convergence.iterations = {60, 40, 25};
    p.stages[0].smoothing_sigmas = {1, 0.5, 0};
    const auto t0 = std::chrono::steady_clock::now();
    const RegistrationResult r = register_images(p, w.fixed, w.moving);
    const double secs = seconds_since(t0);
    const double err0 = field_error(w, nullptr), err1 = field_error(w, &r.warp);
    std::printf("  cuda %s: displacement RMS error %.3f -> %.3f mm, %.2f s\n", preset, err0, err1, secs);
    EXPECT_LT(err1, 0.5 * err0);
  }
}

// SyN in ITK's scheme (half-way fields re-inverted every iteration, the inverse warp from them) with
// ANTs' parameters (the plain normalised gradient, SyN[0.25,3,0]) on CUDA against the CPU: the
// same losses within the kernels' rounding, the same warp within 0.05 mm RMS, no folds on either,
// and the inverse consistency that the pipeline reports.
TEST(RegistrationCuda, SynAntsSchemeMatchesTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  const WarpPhantom w = warp_phantom();
  RegistrationParams p = parse_register_command(
      "gigareg register -d 3 -o out/ -t SyN[0.25,3,0] -m CC[f.nii.gz,m.nii.gz,1,2] "
      "-c [30x20x10,1e-6,10] -f 4x2x1 -s 2x1x0vox").params;
  RegistrationResult r[2];
  for (int b = 0; b < 2; ++b) {
    p.device = b == 0 ? DeviceChoice::Cpu : DeviceChoice::Cuda;
    r[b] = register_images(p, w.fixed, w.moving);
    std::vector<double> np(std::size_t(w.g.size.z));
    jacobian_determinant(Context::cpu(), r[b].warp.view(), w.g, {}, whole_box(w.g), {np.data(), w.g.size.z, 1});
    EXPECT_EQ(reduce_slices(Context::cpu(), {np.data(), w.g.size.z, 1})[0], 0.0) << "backend " << b;
    EXPECT_LT(r[b].inverse_residual_mm, 0.01) << "backend " << b;
  }
  ASSERT_EQ(r[0].levels.size(), r[1].levels.size());
  for (std::size_t l = 0; l < r[0].levels.size(); ++l)
    EXPECT_NEAR(r[0].levels[l].final_loss, r[1].levels[l].final_loss, 0.01 * std::abs(r[0].levels[l].final_loss));
  double du = 0;
  for (index_t i = 0; i < r[0].warp.element_count(); ++i) {
    const double d = double(r[0].warp.data()[i]) - r[1].warp.data()[i];
    du += d * d;
  }
  du = std::sqrt(du / double(r[0].warp.voxel_count()));
  std::printf("  SyN (ITK scheme) CUDA vs CPU: warp RMS difference %.4f mm\n", du);
  EXPECT_LT(du, 0.05);
}

TEST(RegistrationCuda, LargeVolumeGreedyTiming) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  // 192^3 (7 Mvox): the time per full-resolution greedy iteration (LNCC radius 2, Adam).
  const Geometry g = grid({192, 192, 192}, {1, 1, 1}, {-96, -96, -96});
  const Volume<float> f = blob_phantom(g, 3, 40);
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 4.0;
  spec.wavelength_mm = 60.0;
  const Volume<float> u = make_smooth_deformation(g, spec);
  const Volume<float> m = warp_image(f, g, Affined::identity(), &u);
  RegistrationParams p;
  p.device = DeviceChoice::Cuda;
  p.compute_inverse = false;
  StageParams s = registration_preset("greedy").stages.back();
  s.convergence = {{50}, -1.0, 10};  // exactly 50 iterations
  s.shrink_factors = {1};
  s.smoothing_sigmas = {0};
  p.stages = {s};
  const RegistrationResult r = register_images(p, f, m);
  ASSERT_EQ(r.levels.size(), 1u);
  std::printf("  cuda greedy 192^3: %d iterations in %.3f s (%.2f ms per iteration), loss %.4f -> %.4f\n",
              r.levels[0].iterations, r.levels[0].seconds, 1e3 * r.levels[0].seconds / r.levels[0].iterations,
              r.levels[0].initial_loss, r.levels[0].final_loss);
  EXPECT_LT(r.levels[0].final_loss, r.levels[0].initial_loss);
}

TEST(RegistrationCuda, RealBrainPairDice) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = std::string(GIGAREG_SHARED_DATA) + "/brain_labelled/";
  const std::string f = dir + "cfmi_sub-01_brainmask.nii.gz", m = dir + "cfmi_sub-02_brainmask.nii.gz";
  const std::string fl = dir + "cfmi_sub-01_aseg.nii.gz", ml = dir + "cfmi_sub-02_aseg.nii.gz";
  for (const std::string& p : {f, m, fl, ml})
    if (!fs::exists(p)) GTEST_SKIP() << "real data not found: " << p;
  QuietLogs quiet;
  const Image fixed = read_image(f), moving = read_image(m), fixed_labels = read_image(fl), moving_labels = read_image(ml);
  for (const char* preset : {"affine", "greedy", "syn"}) {
    RegistrationParams p = registration_preset(preset);
    p.device = DeviceChoice::Cuda;
    const RegistrationResult r = register_images(p, fixed.voxels, moving.voxels);
    std::vector<TransformEntry> chain;
    if (!r.warp.empty()) {
      TransformEntry e;
      e.is_field = true;
      e.field = &r.warp;
      chain.push_back(e);
    }
    TransformEntry a;
    a.affine = r.affine;
    chain.push_back(a);
    const Volume<float> warped_labels = apply_transforms(moving_labels.voxels, fixed.voxels.geometry(), chain,
                                                         Interpolation::Label, DeviceChoice::Cuda);
    const Volume<float> unreg = apply_transforms(moving_labels.voxels, fixed.voxels.geometry(), {},
                                                 Interpolation::Label, DeviceChoice::Cuda);
    const double before = mean_dice(dice_per_label(fixed_labels.voxels, unreg));
    const double after = mean_dice(dice_per_label(fixed_labels.voxels, warped_labels));
    std::printf("  cuda preset %s, cfmi sub-02 -> sub-01 (256^3): mean aseg Dice %.3f -> %.3f, %.2f s\n", preset,
                before, after, r.seconds);
    for (const LevelReport& l : r.levels)
      std::printf("    stage %d level %d %lldx%lldx%lld: %d it%s, loss %.5g -> %.5g, %.2f s\n", l.stage + 1, l.level + 1,
                  (long long)l.size.x, (long long)l.size.y, (long long)l.size.z, l.iterations,
                  l.converged ? " (converged)" : "", l.initial_loss, l.final_loss, l.seconds);
    EXPECT_GT(after, before + 0.1);
  }
}
