// The registration pipeline (CPU backend): the ANTs option grammar, the window convergence rule
// (checked against ITK's own WindowConvergenceMonitoringFunction), moments initialisation (never
// a reflection, also on a real brain pair when ../shared/data is present), phantom recovery of a
// known affine (linear stages) and of a known smooth warp (greedy and SyN), and the output files
// read back by ITK: the .mat and the warp resample the moving image, through ITK's own
// ResampleImageFilter with a composite transform in antsApplyTransforms' order, into the image
// gigareg wrote. The CUDA pipeline against this one: tests/cuda/test_registration_cuda.cpp.
#include <gtest/gtest.h>

#include <itkAffineTransform.h>
#include <itkCompositeTransform.h>
#include <itkDisplacementFieldTransform.h>
#include <itkImageFileReader.h>
#include <itkLinearInterpolateImageFunction.h>
#include <itkMatrixOffsetTransformBase.h>
#include <itkResampleImageFilter.h>
#include <itkTransformFileReader.h>
#include <itkWindowConvergenceMonitoringFunction.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "gigareg/log.hpp"
#include "gigareg/metrics.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"
#include "gigareg/registration.hpp"
#include "gigareg/register_command.hpp"
#include "registration_test_util.hpp"
#include "result_digest.hpp"

using namespace gigareg;
using namespace gigareg::test;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// The ANTs grammar.

TEST(AntsSyntax, Calls) {
  const ants::Call c = ants::parse_call("CC[f.nii,m.nii,1,4]");
  EXPECT_EQ(c.name, "CC");
  ASSERT_EQ(c.args.size(), 4u);
  EXPECT_EQ(c.args[0], "f.nii");
  EXPECT_EQ(c.args[3], "4");
  EXPECT_TRUE(c.bracketed);
  const ants::Call b = ants::parse_call(" [ a , b ] ");
  EXPECT_EQ(b.name, "");
  ASSERT_EQ(b.args.size(), 2u);
  EXPECT_EQ(b.args[1], "b");
  const ants::Call plain = ants::parse_call("out/prefix_");
  EXPECT_EQ(plain.name, "out/prefix_");
  EXPECT_FALSE(plain.bracketed);
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_call("CC[a,b"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_call("CC[a,[b]]"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_call("a]"); }));
}

TEST(AntsSyntax, ListsConvergenceSigmas) {
  EXPECT_EQ(ants::parse_int_x_list("100x70x50"), (std::vector<int>{100, 70, 50}));
  EXPECT_EQ(ants::parse_x_list("4x2x1"), (std::vector<double>{4, 2, 1}));
  EXPECT_EQ(ants::parse_x_list("1.5"), (std::vector<double>{1.5}));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_x_list("4xx1"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_int_x_list("10x2.5"); }));

  const ConvergenceParams c = ants::parse_convergence("[100x50,1e-6,10]");
  EXPECT_EQ(c.iterations, (std::vector<int>{100, 50}));
  EXPECT_DOUBLE_EQ(c.threshold, 1e-6);
  EXPECT_EQ(c.window, 10);
  const ConvergenceParams d = ants::parse_convergence("20x10");
  EXPECT_EQ(d.iterations, (std::vector<int>{20, 10}));
  EXPECT_DOUBLE_EQ(d.threshold, 1e-6);
  EXPECT_EQ(d.window, 10);
  const ConvergenceParams e = ants::parse_convergence("[30,1e-8]");
  EXPECT_DOUBLE_EQ(e.threshold, 1e-8);
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_convergence("[100x50,abc,10]"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_convergence("[100x50,1e-6,0]"); }));

  const ants::Sigmas v = ants::parse_smoothing_sigmas("2x1x0vox");
  EXPECT_EQ(v.values, (std::vector<double>{2, 1, 0}));
  EXPECT_FALSE(v.in_mm);
  EXPECT_TRUE(ants::parse_smoothing_sigmas("2x1x0mm").in_mm);
  EXPECT_TRUE(ants::parse_smoothing_sigmas("2x1x0").in_mm);  // ANTs' default unit
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_smoothing_sigmas("2x-1vox"); }));
}

TEST(AntsSyntax, MetricsTransformsAndFiles) {
  const ants::MetricSpec cc = ants::parse_metric("CC[f.nii,m.nii,1,4]");
  EXPECT_EQ(cc.params.type, MetricType::CC);
  EXPECT_EQ(cc.params.radius, 4);
  EXPECT_EQ(cc.fixed, "f.nii");
  EXPECT_EQ(cc.moving, "m.nii");
  const ants::MetricSpec mi = ants::parse_metric("MI[f.nii.gz,m.nii.gz,1,32,Regular,0.25]");
  EXPECT_EQ(mi.params.type, MetricType::MI);
  EXPECT_EQ(mi.params.bins, 32);
  EXPECT_EQ(ants::parse_metric("Mattes[a,b,0.5,48]").params.bins, 48);
  EXPECT_EQ(ants::parse_metric("MeanSquares[a,b,1]").params.type, MetricType::MeanSquares);
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_metric("Demons[a,b,1,4]"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_metric("CC[a]"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_metric("MI[a,b,1,2]"); }));
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_metric("CC[a,b,1,4,Sometimes]"); }));

  StageParams s;
  ants::parse_transform("Affine[0.25]", s);
  EXPECT_EQ(s.transform, TransformType::Affine);
  EXPECT_DOUBLE_EQ(s.step, 0.25);
  ants::parse_transform("Rigid[0.1]", s);
  EXPECT_EQ(s.transform, TransformType::Rigid);
  ants::parse_transform("Greedy[0.3,1.5,0.5]", s);
  EXPECT_EQ(s.optimizer, FieldOptimizer::Auto);  // Adam
  EXPECT_EQ(s.transform, TransformType::Greedy);
  EXPECT_DOUBLE_EQ(s.gradient_sigma, 1.5);
  EXPECT_DOUBLE_EQ(s.field_sigma, 0.5);
  ants::parse_transform("SyN[0.1,3,0]", s);  // ANTs' variances
  EXPECT_EQ(s.transform, TransformType::SyN);
  EXPECT_NEAR(s.gradient_sigma, std::sqrt(3.0), 1e-12);
  EXPECT_EQ(s.optimizer, FieldOptimizer::GradientDescent);  // ANTs' algorithm
  EXPECT_DOUBLE_EQ(s.field_sigma, 0.0);
  ants::parse_transform("GaussianDisplacementField[0.2,4,1]", s);
  EXPECT_EQ(s.transform, TransformType::Greedy);
  EXPECT_DOUBLE_EQ(s.gradient_sigma, 2.0);
  EXPECT_TRUE(throws_invalid_argument([&] { ants::parse_transform("BSplineSyN[0.1,26,0,3]", s); }));
  EXPECT_TRUE(throws_invalid_argument([&] { ants::parse_transform("Affine[-1]", s); }));

  const ants::InitialSpec com = ants::parse_initial_transform("[f.nii.gz,m.nii.gz,1]");
  EXPECT_EQ(com.type, InitialTransformType::CenterOfMass);
  EXPECT_EQ(ants::parse_initial_transform("[f,m,3]").type, InitialTransformType::Moments);
  const ants::InitialSpec file = ants::parse_initial_transform("[init.mat,1]");
  EXPECT_EQ(file.type, InitialTransformType::Given);
  EXPECT_TRUE(file.invert);
  EXPECT_EQ(file.file, "init.mat");
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_initial_transform("[f,m,7]"); }));

  const ants::OutputSpec o = ants::parse_output("[out/reg_,out/w.nii.gz,out/iw.nii.gz]");
  EXPECT_EQ(o.prefix, "out/reg_");
  EXPECT_EQ(o.warped, "out/w.nii.gz");
  EXPECT_EQ(o.inverse_warped, "out/iw.nii.gz");
  EXPECT_EQ(ants::parse_output("out/").prefix, "out/");
  const ants::MaskSpec x = ants::parse_masks("[NULL,mm.nii.gz]");
  EXPECT_EQ(x.fixed, "");
  EXPECT_EQ(x.moving, "mm.nii.gz");
  const ants::TransformFileSpec t = ants::parse_transform_file("[a.mat,1]");
  EXPECT_EQ(t.file, "a.mat");
  EXPECT_TRUE(t.invert);
  EXPECT_EQ(ants::parse_interpolation("GenericLabel"), Interpolation::Label);
  EXPECT_EQ(ants::parse_interpolation("NearestNeighbor"), Interpolation::Nearest);
  EXPECT_EQ(ants::parse_interpolation("BSpline[3]"), Interpolation::BSpline);
  EXPECT_EQ(ants::parse_interpolation("BSpline"), Interpolation::BSpline);
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_interpolation("BSpline[5]"); }));
  EXPECT_EQ(ants::parse_device("cuda"), DeviceChoice::Cuda);
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_device("tpu"); }));
}

TEST(RegistrationParams, ValidationAndPresets) {
  for (const char* name : {"rigid", "affine", "greedy", "syn"}) EXPECT_NO_THROW(registration_preset(name).validate());
  EXPECT_TRUE(throws_invalid_argument([] { registration_preset("bspline"); }));
  RegistrationParams p = registration_preset("greedy");
  std::swap(p.stages[0], p.stages[2]);  // deformable before linear
  EXPECT_TRUE(throws_invalid_argument([&] { p.validate(); }));
  p = registration_preset("affine");
  p.stages[0].shrink_factors = {4, 2};
  EXPECT_TRUE(throws_invalid_argument([&] { p.validate(); }));
  p = registration_preset("affine");
  p.stages[0].metric.type = MetricType::CC;
  p.stages[0].metric.radius = 0;
  EXPECT_TRUE(throws_invalid_argument([&] { p.validate(); }));
  EXPECT_TRUE(throws_invalid_argument([] { RegistrationParams().validate(); }));
}

// ---------------------------------------------------------------------------------------------
// The convergence rule, against ITK's WindowConvergenceMonitoringFunction itself.

TEST(ConvergenceMonitor, MatchesItkWindowConvergenceMonitoringFunction) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> noise(-0.02, 0.02);
  for (int window : {2, 5, 10}) {
    ConvergenceMonitor ours(window);
    using ItkMonitor = itk::Function::WindowConvergenceMonitoringFunction<double>;
    auto itk_monitor = ItkMonitor::New();
    itk_monitor->SetWindowSize(unsigned(window));
    for (int n = 0; n < 40; ++n) {
      // A loss that decreases then flattens, with noise (negative, like -LNCC).
      const double loss = -0.8 + 0.6 * std::exp(-n / 8.0) + noise(rng);
      ours.add(loss);
      itk_monitor->AddEnergyValue(loss);
      if (n + 1 < window) {
        EXPECT_GT(ours.value(), 1e300);
        continue;
      }
      const double expected = itk_monitor->GetConvergenceValue();
      EXPECT_NEAR(ours.value(), expected, 1e-9 + 1e-6 * std::abs(expected))
          << "window " << window << " value " << n;
    }
  }
}

TEST(ConvergenceMonitor, AWindowOfOneNeverConverges) {
  // One value has no slope: the level must run all its iterations, whatever the losses.
  ConvergenceMonitor m(1);
  for (double loss : {1.0, 1.0, 0.5, 0.5, 0.0}) {
    m.add(loss);
    EXPECT_EQ(m.value(), std::numeric_limits<double>::max());
    EXPECT_FALSE(m.converged(1e-6));
  }
}

TEST(ConvergenceMonitor, SlopeRule) {
  ConvergenceMonitor m(5);
  for (int n = 0; n < 5; ++n) m.add(10.0 - n);  // decreasing: positive value, not converged
  EXPECT_GT(m.value(), 0.0);
  EXPECT_FALSE(m.converged(1e-6));
  ConvergenceMonitor flat(5);
  for (int n = 0; n < 5; ++n) flat.add(3.0);
  EXPECT_NEAR(flat.value(), 0.0, 1e-4);  // a flat window converges for thresholds above ~1e-4
  EXPECT_TRUE(flat.converged(1e-3));
  ConvergenceMonitor rising(5);
  for (int n = 0; n < 5; ++n) rising.add(1.0 + n);
  EXPECT_TRUE(rising.converged(1e-6));  // an increasing loss stops the level
  // Normalised by the total |loss| since the reset: scale-free.
  ConvergenceMonitor a(4), b(4);
  for (double v : {5.0, 4.0, 3.5, 3.2, 3.1}) {
    a.add(v);
    b.add(1000 * v);
  }
  EXPECT_NEAR(a.value(), b.value(), 1e-12);
  a.reset();
  EXPECT_GT(a.value(), 1e300);
}

// ---------------------------------------------------------------------------------------------
// Moments.

TEST(Moments, CentreOfMassAndPrincipalAxesNeverFlip) {
  QuietLogs quiet;
  const Geometry g = grid({40, 44, 36}, {2, 2, 2}, {-40, -44, -36});
  const Volume<float> fixed = blob_phantom(g, 11);
  const ImageMoments mf = image_moments(fixed);
  EXPECT_GT(mf.mass, 0);
  // A known rigid motion: rotation of 20 degrees and a shift.
  const Vec3d c = grid_center(g);
  const Affined b = make_affine({12, -8, 14}, {1, 1, 1}, {4, -3, 5}, c);  // moving(y) = fixed(B y)
  const Volume<float> moving = warp_image(fixed, g, b);
  const Affined truth = invert_affine(b);
  const ImageMoments mm = image_moments(moving);
  const Vec3d expected_center = b(mm.center);  // the moving COM maps back onto the fixed COM
  EXPECT_NEAR(expected_center.x, mf.center.x, 0.5);
  EXPECT_NEAR(expected_center.y, mf.center.y, 0.5);
  EXPECT_NEAR(expected_center.z, mf.center.z, 0.5);

  InitialTransform init;
  init.type = InitialTransformType::Moments;
  const Initialization moments = initialize_transform(init, fixed, moving);
  EXPECT_GT(determinant(moments.affine.matrix), 0.0);
  init.type = InitialTransformType::CenterOfMass;
  const Initialization com = initialize_transform(init, fixed, moving);
  const double err_moments = rms_point_error(g, moments.affine, truth);
  const double err_com = rms_point_error(g, com.affine, truth);
  std::printf("  moments init: RMS point error %.2f voxels (centre of mass only: %.2f)\n", err_moments, err_com);
  EXPECT_LT(err_moments, err_com);

  // A mirrored moving image: the principal axes would fit a reflection best; the initialisation
  // must stay a proper rotation.
  Affined mirror{Mat3d{{-1, 0, 0, 0, 1, 0, 0, 0, 1}}, {0, 0, 0}};
  mirror.offset = c - mirror.matrix * c;
  const Volume<float> mirrored = warp_image(fixed, g, mirror);
  init.type = InitialTransformType::Moments;
  const Initialization m2 = initialize_transform(init, fixed, mirrored);
  EXPECT_NEAR(determinant(m2.affine.matrix), 1.0, 1e-9);
}

TEST(Moments, RealBrainPairNeverFlips) {
  QuietLogs quiet;
  const std::string dir = std::string(GIGAREG_SHARED_DATA) + "/brain_labelled/";
  const std::string a = dir + "cfmi_sub-01_brainmask.nii.gz", b = dir + "cfmi_sub-02_brainmask.nii.gz";
  if (!fs::exists(a) || !fs::exists(b)) GTEST_SKIP() << "real data not found in " << dir;
  auto load = [](const std::string& path) {
    Image img = read_image(path);
    const Geometry& g = img.voxels.geometry();
    const Geometry lg = pyramid_level_geometry(g, 4.0);
    Volume<float> out(lg);
    pyramid_downsample(Context::cpu(), img.voxels.view(), g, out.view(), lg, {1.5, 1.5, 1.5}, whole(lg));
    return out;
  };
  const Volume<float> f = load(a), m = load(b);
  InitialTransform init;
  init.type = InitialTransformType::Moments;
  const Initialization r = initialize_transform(init, f, m);
  const double det = determinant(r.affine.matrix);
  const double angle = std::acos(std::clamp((r.affine.matrix(0, 0) + r.affine.matrix(1, 1) + r.affine.matrix(2, 2) - 1) / 2, -1.0, 1.0)) * 180 / 3.141592653589793;
  std::printf("  brain pair (sub-01, sub-02 at 4 mm): det %.6f, rotation %.1f degrees\n", det, angle);
  EXPECT_NEAR(det, 1.0, 1e-9);
  EXPECT_LT(angle, 15.0);  // two brains in the same scanner convention: no large rotation, no flip
}

// ---------------------------------------------------------------------------------------------
// Phantom recovery.

TEST(Registration, AffineStagesRecoverAKnownAffine) {
  QuietLogs quiet;
  const Geometry fg = grid({48, 52, 44}, {2, 2, 2}, {-48, -52, -44});
  const Volume<float> fixed = blob_phantom(fg, 3);
  // The moving image lives on another (oblique, coarser) grid: moving(y) = fixed(B y).
  Geometry mg = grid({46, 48, 42}, {2.2, 2.1, 2.3}, {-50, -50, -48},
                     make_affine({3, -2, 4}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}).matrix);
  const Affined b = make_affine({4, -3, 5}, {1.04, 0.97, 1.02}, {3, -2, 4}, grid_center(fg));
  const Volume<float> moving = warp_image(fixed, mg, b);
  const Affined truth = invert_affine(b);  // fixed -> moving

  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::CenterOfMass;
  p.stages = {stage(TransformType::Rigid, MetricType::MI, {60, 40, 20}, {4, 2, 1}, {2, 1, 0}, 0.2),
              stage(TransformType::Affine, MetricType::MeanSquares, {60, 40, 30}, {4, 2, 1}, {2, 1, 0}, 0.1)};
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult r = register_images(p, fixed, moving);
  const double secs = seconds_since(t0);
  test::record_result_digest(r);
  const double before = rms_point_error(fg, Affined::identity(), truth);
  const double after = rms_point_error(fg, r.affine, truth);
  const double mse_before = loss_of(MetricType::MeanSquares, fixed, warp_image(moving, fg, Affined::identity()));
  const double mse_after = loss_of(MetricType::MeanSquares, fixed, r.warped);
  std::printf("  affine recovery: RMS point error %.3f -> %.3f voxels, MSE %.1f -> %.1f, %.1f s\n",
              before, after, mse_before, mse_after, secs);
  for (const LevelReport& l : r.levels)
    std::printf("    stage %d level %d: %d it%s, loss %.5g -> %.5g, %.2f s\n", l.stage + 1, l.level + 1,
                l.iterations, l.converged ? " (converged)" : "", l.initial_loss, l.final_loss, l.seconds);
  EXPECT_LT(after, 0.5);
  EXPECT_LT(mse_after, 0.05 * mse_before);
  EXPECT_GT(determinant(r.affine.matrix), 0.0);
  EXPECT_TRUE(r.warp.empty());
}

namespace {

void check_deformable(TransformType type, double min_error_reduction) {
  QuietLogs quiet;
  const WarpPhantom w = warp_phantom();
  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::Identity;
  // The deformable stage of the preset (Adam, CC radius 2) with the step and sigmas this smooth
  // phantom was made for (0.1, 2 and 1 voxels: the presets' are tuned for brains), fewer
  // iterations and lighter smoothing.
  StageParams s = registration_preset(type == TransformType::Greedy ? "greedy" : "syn").stages.back();
  ASSERT_EQ(s.transform, type);
  s.step = 0.1;
  s.gradient_sigma = 2.0;
  s.field_sigma = 1.0;
  s.convergence.iterations = {60, 40, 25};
  s.smoothing_sigmas = {1, 0.5, 0};
  p.stages = {s};
  std::vector<double> first_level;
  p.progress = [&](const IterationReport& r) {
    if (r.level == 0) first_level.push_back(r.loss);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult r = register_images(p, w.fixed, w.moving);
  const double secs = seconds_since(t0);
  test::record_result_digest(r, to_string(type));
  ASSERT_FALSE(r.warp.empty());
  ASSERT_FALSE(r.inverse_warp.empty());
  const double err0 = field_error(w, nullptr), err1 = field_error(w, &r.warp);
  const Volume<float> unreg = warp_image(w.moving, w.g, Affined::identity());
  const Volume<float> ideal = warp_image(w.moving, w.g, Affined::identity(), &w.truth);
  const double cc0 = loss_of(MetricType::CC, w.fixed, unreg), cc1 = loss_of(MetricType::CC, w.fixed, r.warped);
  const double cc_truth = loss_of(MetricType::CC, w.fixed, ideal);
  const double mse0 = loss_of(MetricType::MeanSquares, w.fixed, unreg);
  const double mse1 = loss_of(MetricType::MeanSquares, w.fixed, r.warped);
  std::printf("  %s recovery: displacement RMS error %.3f -> %.3f mm (%.0f%% less), LNCC %.4f -> %.4f "
              "(with the true warp %.4f), MSE %.1f -> %.1f, inverse residual %.2g mm, %.1f s\n",
              to_string(type), err0, err1, 100 * (1 - err1 / err0), -cc0, -cc1, -cc_truth, mse0, mse1,
              r.inverse_residual_mm, secs);
  for (const LevelReport& l : r.levels)
    std::printf("    level %d %lldx%lldx%lld: %d it%s, loss %.5g -> %.5g, %.2f s\n", l.level + 1,
                (long long)l.size.x, (long long)l.size.y, (long long)l.size.z, l.iterations,
                l.converged ? " (converged)" : "", l.initial_loss, l.final_loss, l.seconds);
  EXPECT_LT(err1, (1 - min_error_reduction) * err0);
  EXPECT_LT(cc1, cc0 - 0.5 * (cc0 - cc_truth));  // LNCC gains at least half of what the truth gains
  EXPECT_LT(mse1, 0.5 * mse0);
  ASSERT_GE(first_level.size(), 2u);
  EXPECT_LT(first_level.back(), first_level.front());
  for (const LevelReport& l : r.levels) EXPECT_LE(l.final_loss, l.initial_loss);
  // The inverse is an inverse. One direction is solved for and holds everywhere: greedy's inverse
  // warp is the inverse of u (invert_field: w(x) + u(x + w(x)) ~ 0); SyN's u is made the inverse of
  // its inverse warp (from the half-way fields: u(x) + w(x + u(x)) ~ 0). The other direction holds
  // away from the border up to the interpolation of the field sampled between grid points.
  Volume<float> comp(w.g, 3), comp2(w.g, 3);
  compose_fields(Context::cpu(), r.inverse_warp.view(), w.g, r.warp.view(), w.g, comp.view(), whole(w.g));
  compose_fields(Context::cpu(), r.warp.view(), w.g, r.inverse_warp.view(), w.g, comp2.view(), whole(w.g));
  const Volume<float>& solved = type == TransformType::SyN ? comp2 : comp;
  const Volume<float>& other = type == TransformType::SyN ? comp : comp2;
  double worst = 0, worst_interior = 0;
  const index_t n = w.g.voxel_count();
  for (index_t k = 0; k < w.g.size.z; ++k)
    for (index_t j = 0; j < w.g.size.y; ++j)
      for (index_t i = 0; i < w.g.size.x; ++i) {
        const bool interior = std::min({i, j, k, w.g.size.x - 1 - i, w.g.size.y - 1 - j, w.g.size.z - 1 - k}) >= 4;
        const index_t v = i + w.g.size.x * (j + w.g.size.y * k);
        for (int c = 0; c < 3; ++c) {
          worst = std::max(worst, double(std::abs(solved.data()[c * n + v])));
          if (interior) worst_interior = std::max(worst_interior, double(std::abs(other.data()[c * n + v])));
        }
      }
  EXPECT_LT(worst, 0.01);           // mm
  EXPECT_LT(worst_interior, 0.25);  // mm (interpolating the field at x + u(x))
  EXPECT_LT(r.inverse_residual_mm, 0.01);
}

}  // namespace

TEST(Registration, GreedyRecoversAKnownSmoothWarp) { check_deformable(TransformType::Greedy, 0.5); }

TEST(Registration, SynRecoversAKnownSmoothWarp) { check_deformable(TransformType::SyN, 0.5); }

// SyN with ANTs' own parameters on a real pair (issue 21): the prostate MR pair of
// ../shared/data, Affine then SyN[0.25,3,0], both at 4x2 (finest level 32x32x30). The former
// scheme (the update composed into the sampling fields, inverted once at the end) folded 0.97% of
// the voxels here (2372 of 245760; 2.0% with third levels at full resolution); ITK's scheme
// (half-way fields re-inverted every iteration, boundary held) must not fold at all, and its
// inverse warp must be an inverse: |u(x) + w(x + u(x))| within 0.1 voxel at the 99.9th
// percentile of the fixed foreground (the pipeline's report; recomputed here in double).
TEST(Registration, SynWithAntsParametersDoesNotFoldOnARealPair) {
  QuietLogs quiet;
  const std::string dir = std::string(GIGAREG_SHARED_DATA) + "/multimodal/prostate_mr_trus/";
  const std::string f = dir + "case000000_mr_image.nii.gz", m = dir + "case000001_mr_image.nii.gz";
  if (!fs::exists(f) || !fs::exists(m)) GTEST_SKIP() << "real data not found in " << dir;
  RegisterCommand c = parse_register_command(
      "gigareg register -d 3 -o out/ -r [" + f + "," + m + ",1] -t Affine[0.1] -m MI[" + f + "," + m +
      ",1,32] -c [200x100,1e-6,10] -f 4x2 -s 2x1vox -t SyN[0.25,3,0] -m CC[" + f + "," + m +
      ",1,2] -c [100x70,1e-6,10] -f 4x2 -s 2x1vox --device cpu");
  const Image fixed = read_image(f), moving = read_image(m);
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult r = register_images(c.params, fixed.voxels, moving.voxels);
  const double secs = seconds_since(t0);
  const Geometry& g = fixed.voxels.geometry();
  ASSERT_FALSE(r.warp.empty());
  ASSERT_FALSE(r.inverse_warp.empty());
  std::vector<double> nonpositive(std::size_t(g.size.z));
  jacobian_determinant(Context::cpu(), r.warp.view(), g, {}, whole(g), {nonpositive.data(), g.size.z, 1});
  const double folds = reduce_slices(Context::cpu(), {nonpositive.data(), g.size.z, 1})[0];
  // Inverse consistency over the foreground (>= 10% of the fixed maximum), in voxels.
  float top = 0;
  for (index_t i = 0; i < g.voxel_count(); ++i) top = std::max(top, fixed.voxels.data()[i]);
  std::vector<double> res;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        if (!(fixed.voxels(i, j, k) >= 0.1f * top)) continue;
        const Vec3d x = g.index_to_physical(index3d(i, j, k));
        const Vec3d u = vec_at(r.warp, i, j, k);
        const Vec3d p = g.physical_to_index(x + u);
        const bool inside = p[0] >= -0.5 && p[1] >= -0.5 && p[2] >= -0.5 && p[0] < g.size.x - 0.5 &&
                            p[1] < g.size.y - 0.5 && p[2] < g.size.z - 0.5;
        const Vec3d e = inside ? u + ref_trilinear3(r.inverse_warp, p, false) : u;
        res.push_back(std::sqrt(dot(e, e)) / g.spacing.x);
      }
  ASSERT_FALSE(res.empty());
  std::sort(res.begin(), res.end());
  const double p999 = res[std::size_t(std::ceil(0.999 * double(res.size()))) - 1];
  std::printf("  prostate MR pair, Affine + SyN[0.25,3,0]: %.0f of %lld voxels fold, inverse consistency "
              "99.9%% %.3g voxel (largest %.3g), %.1f s\n",
              folds, (long long)g.voxel_count(), p999, res.back(), secs);
  EXPECT_EQ(folds, 0.0);
  EXPECT_LE(p999, 0.1);
}

// A greedy stage whose total field is not smoothed (GaussianDisplacementField[g,v,0]) can fold:
// the run says so before it starts, and what to use instead.
TEST(Registration, GreedyWithoutTotalFieldSmoothingWarns) {
  std::vector<std::string> warnings;
  const LogSink before = set_log_sink([&](LogLevel level, std::string_view text) {
    if (level == LogLevel::Warning) warnings.emplace_back(text);
  });
  const WarpPhantom w = warp_phantom();
  for (const char* t : {"GaussianDisplacementField[0.25,3,0]", "GaussianDisplacementField[0.25,3,0.5]"}) {
    warnings.clear();
    RegistrationParams p = parse_register_command(
        std::string("gigareg register -d 3 -o out/ -t ") + t +
        " -m CC[f.nii.gz,m.nii.gz,1,2] -c [2,1e-6,10] -f 4 -s 1vox --device cpu").params;
    p.compute_inverse = false;
    register_images(p, w.fixed, w.moving);
    bool said = false;
    for (const std::string& m : warnings) said = said || (m.find("can fold") != std::string::npos &&
                                                          m.find("SyN[") != std::string::npos);
    EXPECT_EQ(said, std::string(t).find(",0]") != std::string::npos) << t;
  }
  set_log_sink(before);
}

// ---------------------------------------------------------------------------------------------
// Output files, read back by ITK.

TEST(RegistrationFiles, ItkReadsTheOutputsAndReproducesTheWarpedImage) {
  QuietLogs quiet;
  const fs::path dir = fs::temp_directory_path() / ("gigareg_reg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Fixed and moving on different oblique grids, related by an affine and a smooth warp.
  const Geometry fg = grid({36, 40, 32}, {2, 2, 2.2}, {-36, -40, -35},
                           make_affine({2, 3, -4}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}).matrix);
  const Geometry mg = grid({34, 38, 30}, {2.2, 2.1, 2.3}, {-37, -40, -34});
  const Volume<float> base = blob_phantom(mg, 21);
  const Volume<float> fixed = known_transform_of(base, fg, {3, -2, 2}, {1.02, 0.98, 1.0}, {2, -1, 1.5});
  const std::string fixed_path = (dir / "fixed.nii.gz").string(), moving_path = (dir / "moving.nii.gz").string();
  write_image(fixed_path, fixed);
  write_image(moving_path, base);

  RegistrationParams p;
  p.device = DeviceChoice::Cpu;
  p.initial.type = InitialTransformType::CenterOfMass;
  p.stages = {stage(TransformType::Affine, MetricType::MeanSquares, {50, 30, 20}, {4, 2, 1}, {2, 1, 0}, 0.1),
              stage(TransformType::Greedy, MetricType::MeanSquares, {40, 30, 20}, {4, 2, 1}, {1, 0.5, 0}, 0.1)};
  RegistrationFiles files;
  files.fixed = fixed_path;
  files.moving = moving_path;
  files.output_prefix = (dir / "out" / "reg_").string();
  files.warped = (dir / "out" / "warped.nii.gz").string();
  files.inverse_warped = (dir / "out" / "inverse_warped.nii.gz").string();
  RegistrationOutputs out;
  const RegistrationResult r = register_files(p, files, &out);
  test::record_result_digest(r);
  ASSERT_EQ(out.affine, files.output_prefix + "0GenericAffine.mat");
  ASSERT_EQ(out.warp, files.output_prefix + "1Warp.nii.gz");
  ASSERT_EQ(out.inverse_warp, files.output_prefix + "1InverseWarp.nii.gz");
  ASSERT_TRUE(fs::exists(out.inverse_warped));

  // ITK: the transform file.
  register_itk_io_factories();
  auto reader = itk::TransformFileReaderTemplate<double>::New();
  reader->SetFileName(out.affine);
  reader->Update();
  ASSERT_EQ(reader->GetTransformList()->size(), 1u);
  using Linear = itk::MatrixOffsetTransformBase<double, 3, 3>;
  Linear* lin = dynamic_cast<Linear*>(reader->GetTransformList()->front().GetPointer());
  ASSERT_NE(lin, nullptr);
  EXPECT_STREQ(lin->GetNameOfClass(), "AffineTransform");
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(lin->GetOffset()[unsigned(i)], r.affine.offset[i], 1e-9);
    EXPECT_NEAR(lin->GetCenter()[unsigned(i)], r.center[i], 1e-9);
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(lin->GetMatrix()(unsigned(i), unsigned(k)), r.affine.matrix(i, k), 1e-12);
  }
  // ITK: the warp, as a DisplacementFieldTransform (vectors in double).
  using VecImage = itk::Image<itk::Vector<double, 3>, 3>;
  auto field_reader = itk::ImageFileReader<VecImage>::New();
  field_reader->SetFileName(out.warp);
  field_reader->Update();
  VecImage::Pointer field = field_reader->GetOutput();
  EXPECT_TRUE(itk_geometry(*field).equals(fg, 1e-5));
  auto disp = itk::DisplacementFieldTransform<double, 3>::New();
  disp->SetDisplacementField(field);
  // antsApplyTransforms -t 1Warp -t 0GenericAffine: ITK's composite applies the LAST added
  // transform first, so add the affine, then the warp: T(x) = A(x + u(x)).
  auto composite = itk::CompositeTransform<double, 3>::New();
  composite->AddTransform(lin);
  composite->AddTransform(disp);
  using FloatImage = itk::Image<float, 3>;
  auto fixed_reader = itk::ImageFileReader<FloatImage>::New();
  fixed_reader->SetFileName(fixed_path);
  fixed_reader->Update();
  auto moving_reader = itk::ImageFileReader<FloatImage>::New();
  moving_reader->SetFileName(moving_path);
  moving_reader->Update();
  auto resample = itk::ResampleImageFilter<FloatImage, FloatImage, double>::New();
  resample->SetInput(moving_reader->GetOutput());
  resample->SetReferenceImage(fixed_reader->GetOutput());
  resample->UseReferenceImageOn();
  resample->SetTransform(composite);
  resample->SetInterpolator(itk::LinearInterpolateImageFunction<FloatImage, double>::New());
  resample->SetDefaultPixelValue(0);
  resample->Update();
  FloatImage::Pointer itk_out = resample->GetOutput();
  const Volume<float> itk_warped = wrap_itk_image(itk_out.GetPointer());
  const Image ours = read_image(out.warped);
  const double span = intensity_span(ours.voxels);
  const double mad = mean_abs_diff(itk_warped, ours.voxels);
  std::printf("  ITK ResampleImageFilter (composite: warp then affine) vs gigareg's warped image: "
              "mean |diff| %.2e of the intensity range\n", mad / span);
  EXPECT_LT(mad, 1e-3 * span);

  // gigareg's own apply (library entry of `gigareg apply`) reproduces it to float rounding.
  ApplyFiles af;
  af.input = moving_path;
  af.reference = fixed_path;
  af.output = (dir / "out" / "applied.nii.gz").string();
  af.transforms = {out.warp, out.affine};
  af.inverse = {false, false};
  apply_transform_files(af);
  const Image applied = read_image(af.output);
  EXPECT_LT(mean_abs_diff(applied.voxels, ours.voxels), 1e-5 * span);

  // The registration helped: the warped moving image is close to the fixed one.
  const double before = mean_abs_diff(fixed, warp_image(base, fg, Affined::identity()));
  const double after = mean_abs_diff(fixed, ours.voxels);
  std::printf("  file pipeline: mean |fixed - moving| %.2f -> %.2f\n", before, after);
  for (const LevelReport& l : r.levels)
    std::printf("    stage %d level %d: %d it%s, loss %.5g -> %.5g, %.2f s\n", l.stage + 1, l.level + 1,
                l.iterations, l.converged ? " (converged)" : "", l.initial_loss, l.final_loss, l.seconds);
  EXPECT_LT(after, 0.35 * before);
  fs::remove_all(dir);
}

TEST(RegistrationFiles, BadInputsGiveClearErrors) {
  QuietLogs quiet;
  RegistrationParams p = registration_preset("affine");
  p.device = DeviceChoice::Cpu;
  RegistrationFiles files;
  files.fixed = "/nonexistent/fixed.nii.gz";
  files.moving = "/nonexistent/moving.nii.gz";
  files.output_prefix = (fs::temp_directory_path() / "gigareg_never_").string();
  try {
    register_files(p, files);
    FAIL() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_EQ(e.where(), files.fixed);
  }
  // Masks on another grid than their image.
  const Geometry g = grid({16, 16, 16}, {2, 2, 2});
  const Volume<float> img = blob_phantom(g, 1, 5);
  Volume<float> mask(grid({8, 8, 8}, {4, 4, 4}));
  mask.fill(1.0f);
  EXPECT_THROW(register_images(p, img, img, &mask), Error);
  // A mask that excludes everything.
  Volume<float> empty_mask(g);
  empty_mask.fill(0.0f);
  p.stages = {stage(TransformType::Affine, MetricType::MeanSquares, {2}, {1}, {0}, 0.1)};
  EXPECT_THROW(register_images(p, img, img, &empty_mask), Error);
  // CUDA requested where there is none.
  if (!cuda_available()) {
    p.device = DeviceChoice::Cuda;
    try {
      register_images(p, img, img);
      FAIL() << "no error for --device cuda without a GPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Cuda);
    }
  }
}
