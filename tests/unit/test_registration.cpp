// The registration pipeline (CPU backend): the ANTs option grammar, the window convergence rule
// (checked against ITK's own WindowConvergenceMonitoringFunction), moments initialisation (never
// a reflection, also on a real brain pair when ../shared/data is present), phantom recovery of a
// known affine (linear stages) and of a known smooth warp (greedy and SyN), and the output files
// read back by ITK: the .mat and the warp resample the moving image, through ITK's own
// ResampleImageFilter with a composite transform in antsApplyTransforms' order, into the image
// gigareg wrote.
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
#include "result_digest.hpp"

using namespace gigareg;
namespace fs = std::filesystem;

namespace {

Box whole(const Geometry& g) { return {{0, 0, 0}, g.size}; }

Geometry grid(Index3 size, Vec3d spacing, Vec3d origin = {0, 0, 0}, Mat3d dir = Mat3d::identity()) {
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.origin = origin;
  g.direction = dir;
  return g;
}

Vec3d grid_center(const Geometry& g) {
  return g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

/// A head-like phantom: random Gaussian blobs inside a smooth ellipsoid, 0 near the borders.
Volume<float> blob_phantom(const Geometry& g, std::uint64_t seed, int blobs = 150) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0), size(2.5, 6.0), amp(-60.0, 120.0);
  const Vec3d c = grid_center(g);
  const BoundingBox bb = g.physical_bounds();
  const Vec3d semi{0.36 * (bb.max.x - bb.min.x), 0.33 * (bb.max.y - bb.min.y), 0.34 * (bb.max.z - bb.min.z)};
  struct Blob { Vec3d p; double s, a; };
  std::vector<Blob> list;
  for (int b = 0; b < blobs; ++b) {
    Vec3d p{unit(rng), unit(rng), unit(rng)};
    const double n = std::sqrt(dot(p, p));
    if (n > 0.8) p = (0.8 / n) * p;
    list.push_back({Vec3d{c.x + p.x * semi.x, c.y + p.y * semi.y, c.z + p.z * semi.z}, size(rng), amp(rng)});
  }
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d p = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d q{(p.x - c.x) / semi.x, (p.y - c.y) / semi.y, (p.z - c.z) / semi.z};
        const double r = std::sqrt(dot(q, q));
        const double env = 1.0 / (1.0 + std::exp((r - 1.0) / 0.04));
        double s = 100.0;
        for (const Blob& b : list) {
          const Vec3d d = p - b.p;
          s += b.a * std::exp(-dot(d, d) / (2 * b.s * b.s));
        }
        v(i, j, k) = float(env * std::max(s, 0.0));
      }
  return v;
}

Volume<float> warp_image(const Volume<float>& moving, const Geometry& out_grid, const Affined& a,
                         const Volume<float>* u = nullptr, Interpolation interp = Interpolation::Linear) {
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = moving.geometry();
  in.fixed_geometry = out_grid;
  in.affine = a;
  if (u) in.displacement = u->view();
  in.interpolation = interp;
  Volume<float> out(out_grid);
  warp(Context::cpu(), in, out.view(), whole(out_grid));
  return out;
}

double mean_abs_diff(const Volume<float>& a, const Volume<float>& b) {
  double s = 0;
  for (index_t n = 0; n < a.voxel_count(); ++n) s += std::abs(double(a.data()[n]) - b.data()[n]);
  return s / double(a.voxel_count());
}

double intensity_span(const Volume<float>& a) {
  float lo = a.data()[0], hi = lo;
  for (index_t n = 0; n < a.voxel_count(); ++n) {
    lo = std::min(lo, a.data()[n]);
    hi = std::max(hi, a.data()[n]);
  }
  return double(hi) - double(lo);
}

/// RMS over the fixed voxels of |a(x) - b(x)| in voxels of the fixed grid (smallest spacing).
double rms_point_error(const Geometry& g, const Affined& a, const Affined& b) {
  double s = 0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d x = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d d = a(x) - b(x);
        s += dot(d, d);
      }
  const double h = std::min(g.spacing.x, std::min(g.spacing.y, g.spacing.z));
  return std::sqrt(s / double(g.voxel_count())) / h;
}

double loss_of(MetricType type, const Volume<float>& f, const Volume<float>& w) {
  const Geometry& g = f.geometry();
  std::vector<double> part(std::size_t(g.size.z) * kLossTerms);
  SlicePartials p{part.data(), g.size.z, kLossTerms};
  if (type == MetricType::MeanSquares) {
    mse_loss(Context::cpu(), f.view(), w.view(), {}, whole(g), p, {});
  } else {
    LnccParams lp;
    lp.radius = 2;
    lncc_loss(Context::cpu(), f.view(), w.view(), {}, whole(g), lp, p, {});
  }
  return reduce_loss(Context::cpu(), p).value();
}

StageParams stage(TransformType t, MetricType m, std::vector<int> iterations, std::vector<double> shrink,
                  std::vector<double> sigmas, double step) {
  StageParams s;
  s.transform = t;
  s.metric.type = m;
  s.metric.radius = 2;
  s.metric.bins = 32;
  s.convergence.iterations = std::move(iterations);
  s.convergence.threshold = 1e-6;
  s.convergence.window = 10;
  s.shrink_factors = std::move(shrink);
  s.smoothing_sigmas = std::move(sigmas);
  s.sigmas_in_mm = false;
  s.step = step;
  return s;
}

template <class F>
bool throws_invalid_argument(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == ErrorKind::InvalidArgument;
  }
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct QuietLogs {
  QuietLogs() { set_log_level(LogLevel::Error); }
  ~QuietLogs() { set_log_level(LogLevel::Warning); }
};

}  // namespace

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
  EXPECT_TRUE(throws_invalid_argument([] { ants::parse_interpolation("BSpline[3]"); }));
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

struct WarpPhantom {
  Geometry g;
  Volume<float> fixed, moving, truth;  // truth: the displacement u with moving(x + u(x)) = fixed(x)
};

WarpPhantom warp_phantom() {
  WarpPhantom w;
  w.g = grid({48, 48, 48}, {2, 2, 2}, {-48, -48, -48});
  w.fixed = blob_phantom(w.g, 5);
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 5.0;  // 2.5 voxels
  spec.wavelength_mm = 50.0;
  spec.seed = 9;
  w.truth = make_smooth_deformation(w.g, spec);
  // moving = fixed o (x + truth)^-1, so that moving(x + truth(x)) = fixed(x).
  Volume<float> inv(w.g, 3);
  InverseOptions o;
  o.iterations = 100;
  o.tolerance = 1e-5;
  invert_field(Context::cpu(), w.truth.view(), w.g, w.g, inv.view(), whole(w.g), o);
  w.moving = warp_image(w.fixed, w.g, Affined::identity(), &inv);
  return w;
}

/// RMS of |a - b| over the voxels where the fixed image has structure (> 10% of its maximum).
double field_error(const WarpPhantom& w, const Volume<float>* u) {
  const index_t n = w.g.voxel_count();
  float fmax = 0;
  for (index_t i = 0; i < n; ++i) fmax = std::max(fmax, w.fixed.data()[i]);
  double s = 0;
  index_t count = 0;
  for (index_t i = 0; i < n; ++i) {
    if (w.fixed.data()[i] < 0.1f * fmax) continue;
    double d2 = 0;
    for (int c = 0; c < 3; ++c) {
      const double d = double(w.truth.data()[c * n + i]) - (u ? double(u->data()[c * n + i]) : 0.0);
      d2 += d * d;
    }
    s += d2;
    ++count;
  }
  return std::sqrt(s / double(count));
}

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
  // The inverse is an inverse: w(x) + u(x + w(x)) ~ 0 everywhere (what invert_field solves), and
  // u(x) + w(x + u(x)) ~ 0 away from the border (where x + u(x) may leave the grid).
  Volume<float> comp(w.g, 3), comp2(w.g, 3);
  compose_fields(Context::cpu(), r.inverse_warp.view(), w.g, r.warp.view(), w.g, comp.view(), whole(w.g));
  compose_fields(Context::cpu(), r.warp.view(), w.g, r.inverse_warp.view(), w.g, comp2.view(), whole(w.g));
  double worst = 0, worst_interior = 0;
  const index_t n = w.g.voxel_count();
  for (index_t k = 0; k < w.g.size.z; ++k)
    for (index_t j = 0; j < w.g.size.y; ++j)
      for (index_t i = 0; i < w.g.size.x; ++i) {
        const bool interior = std::min({i, j, k, w.g.size.x - 1 - i, w.g.size.y - 1 - j, w.g.size.z - 1 - k}) >= 4;
        const index_t v = i + w.g.size.x * (j + w.g.size.y * k);
        for (int c = 0; c < 3; ++c) {
          worst = std::max(worst, double(std::abs(comp.data()[c * n + v])));
          if (interior) worst_interior = std::max(worst_interior, double(std::abs(comp2.data()[c * n + v])));
        }
      }
  EXPECT_LT(worst, 0.01);           // mm
  EXPECT_LT(worst_interior, 0.25);  // mm (interpolating w at x + u(x))
  EXPECT_LT(r.inverse_residual_mm, 0.01);
}

}  // namespace

TEST(Registration, GreedyRecoversAKnownSmoothWarp) { check_deformable(TransformType::Greedy, 0.5); }

TEST(Registration, SynRecoversAKnownSmoothWarp) { check_deformable(TransformType::SyN, 0.5); }

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
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 3.0;
  spec.wavelength_mm = 45.0;
  const Volume<float> u_true = make_smooth_deformation(fg, spec);
  const Affined a_true = make_affine({3, -2, 2}, {1.02, 0.98, 1.0}, {2, -1, 1.5}, grid_center(fg));
  const Volume<float> fixed = warp_image(base, fg, a_true, &u_true);  // fixed(x) = base(A(x + u))
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

// ---------------------------------------------------------------------------------------------
// CUDA: the same pipeline through the same ops on device volumes (skips without a GPU).

TEST(RegistrationCuda, MatchesTheCpuPipeline) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  QuietLogs quiet;
  const Geometry fg = grid({40, 44, 36}, {2, 2, 2}, {-40, -44, -36});
  const Volume<float> base = blob_phantom(fg, 13);
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 3.0;
  spec.wavelength_mm = 45.0;
  const Volume<float> u_true = make_smooth_deformation(fg, spec);
  const Affined a_true = make_affine({3, -2, 4}, {1.02, 0.98, 1.0}, {2, -1, 1.5}, grid_center(fg));
  const Volume<float> moving = warp_image(base, fg, a_true, &u_true);
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
