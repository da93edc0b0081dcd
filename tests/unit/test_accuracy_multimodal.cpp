// Multimodal accuracy (issue 4, "Accuracy"): ../shared/data/multimodal (GIGAREG_SHARED_DATA),
// skipped with a message when the files are absent. Runs on CUDA when a device is visible, else on
// the CPU backend (the images are small: 124x160x140 and 188x256x190 at most).
//
//  * AccuracyMultimodal.StrokeT1ToT2 / StrokeT1ToFlair: the stroke T1, T2 and FLAIR are co-registered
//    on one grid (ground truth: the identity). The moving image is the T1 resampled (linear) through
//    a known affine T_true^-1 onto a grid padded by 16 voxels: T_true is a rotation of 10 degrees
//    about an oblique axis and a 10 mm translation after a mild affine (scales 1.04 / 0.97 / 1.03,
//    shears 0.03 / -0.03 / 0.02), about the fixed image's centre. The "affine" preset (centre-of-mass
//    initialisation, Rigid[0.1] then Affine[0.1], Mattes MI 32 bins, 4x2x1) with T2 (or FLAIR) fixed
//    must recover T_true within 0.5 mm RMS of |T_est(x) - T_true(x)| over the fixed voxels with
//    intensity > 0 (the images are brain-extracted).
//  * AccuracyMultimodal.ChrisT1PdRigidRoundTrip: chris T1 (0.88 mm iso) and PD (0.86x0.86x2.4 mm),
//    different grids. Rigid MI forward (T1 fixed, PD moving: T_f maps T1 points to PD points) and
//    backward (PD fixed, T1 moving: T_b maps PD points to T1 points); T_b(T_f(x)) must be within
//    1 mm RMS of x over the T1 voxels with intensity >= 10% of the T1 maximum (the whole head, a
//    superset of the brain); the maximum over those voxels is printed too.
// Each prints an "ACCURACY" line that benchmarks/run_gpu.sh's accuracy mode collects.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/registration.hpp"
#include "result_digest.hpp"

using namespace gigareg;
namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

struct QuietLogs {
  QuietLogs() { set_log_level(LogLevel::Error); }
  ~QuietLogs() { set_log_level(LogLevel::Warning); }
};

std::string multimodal(const std::string& name) { return std::string(GIGAREG_SHARED_DATA) + "/multimodal/" + name; }

DeviceChoice device() { return cuda_available() ? DeviceChoice::Cuda : DeviceChoice::Cpu; }
const char* device_name() { return cuda_available() ? "cuda" : "cpu"; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Mat3d rotation_about(Vec3d axis, double degrees) {
  const double n = std::sqrt(dot(axis, axis));
  const Vec3d a{axis.x / n, axis.y / n, axis.z / n};
  const double t = degrees * kPi / 180, c = std::cos(t), s = std::sin(t), C = 1 - c;
  return Mat3d{{c + a.x * a.x * C, a.x * a.y * C - a.z * s, a.x * a.z * C + a.y * s,
                a.y * a.x * C + a.z * s, c + a.y * a.y * C, a.y * a.z * C - a.x * s,
                a.z * a.x * C - a.y * s, a.z * a.y * C + a.x * s, c + a.z * a.z * C}};
}

Vec3d grid_center(const Geometry& g) {
  return g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

/// RMS and max over the voxels of `image` with intensity > `threshold` of |a(x) - b(x)|.
struct PointError {
  double rms = 0, max = 0;
  index_t voxels = 0;
};
PointError point_error(const Volume<float>& image, float threshold, const Affined& a, const Affined& b) {
  const Geometry& g = image.geometry();
  double sum = 0, mx = 0;
  index_t n = 0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        if (!(image(i, j, k) > threshold)) continue;
        const Vec3d x = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d d = a(x) - b(x);
        const double e2 = dot(d, d);
        sum += e2;
        mx = std::max(mx, e2);
        ++n;
      }
  return {n > 0 ? std::sqrt(sum / double(n)) : 0.0, std::sqrt(mx), n};
}

float max_of(const Volume<float>& v) {
  float m = 0;
  for (index_t n = 0; n < v.voxel_count(); ++n) m = std::max(m, v.data()[n]);
  return m;
}

double rotation_degrees(const Mat3d& r) {
  const double c = (r(0, 0) + r(1, 1) + r(2, 2) - 1) / 2;
  return std::acos(std::clamp(c, -1.0, 1.0)) * 180 / kPi;
}

void stroke_case(const char* fixed_name) {
  const std::string t1 = multimodal("stroke_T1.nii.gz"), other = multimodal(std::string("stroke_") + fixed_name + ".nii.gz");
  for (const std::string& p : {t1, other})
    if (!fs::exists(p)) GTEST_SKIP() << "real data not found: " << p;
  QuietLogs quiet;
  const Image fixed = read_image(other), source = read_image(t1);
  const Geometry& fg = fixed.voxels.geometry();
  ASSERT_TRUE(fg.equals(source.voxels.geometry())) << "the stroke images should share one grid";

  // T_true(x) = R K (x - c) + c + t: fixed point -> moving point.
  const Vec3d c = grid_center(fg);
  const Mat3d r = rotation_about({1, -2, 1.5}, 10.0);
  const Mat3d k{{1.04, 0.03, 0.0, 0.0, 0.97, -0.03, 0.02, 0.0, 1.03}};
  const Vec3d t{6.0, -6.0, 5.29};  // |t| = 10.0 mm
  Affined truth;
  truth.matrix = r * k;
  truth.offset = c + t - truth.matrix * c;
  // The moving grid: the fixed grid padded by 16 voxels on every side (the brain moves by up to
  // about 17 mm), so nothing of the brain is cut.
  Geometry mg = fg;
  const index_t pad = 16;
  mg.size = {fg.size.x + 2 * pad, fg.size.y + 2 * pad, fg.size.z + 2 * pad};
  mg.origin = fg.index_to_physical({-double(pad), -double(pad), -double(pad)});
  // moving(y) = T1(T_true^-1(y)), so that moving(T_true(x)) = T1(x), which matches the fixed image.
  const Volume<float> moving = apply_transforms(source.voxels, mg, {TransformEntry{false, invert_affine(truth), nullptr}},
                                                Interpolation::Linear, DeviceChoice::Cpu);

  RegistrationParams p = registration_preset("affine");
  p.device = device();
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult res = register_images(p, fixed.voxels, moving);
  test::record_result_digest(res, fixed_name);
  const double secs = seconds_since(t0);
  const PointError before = point_error(fixed.voxels, 0.0f, Affined::identity(), truth);
  const Initialization com = initialize_transform(p.initial, fixed.voxels, moving);
  const PointError after_init = point_error(fixed.voxels, 0.0f, com.affine, truth);
  const PointError after = point_error(fixed.voxels, 0.0f, res.affine, truth);
  std::printf("  stroke T1 -> %s (%s): true rotation %.1f degrees, |t| %.1f mm; error over %lld brain voxels: "
              "identity RMS %.2f mm, centre of mass RMS %.2f mm, registered RMS %.3f mm (max %.3f mm), %.2f s\n",
              fixed_name, device_name(), rotation_degrees(r), std::sqrt(dot(t, t)), (long long)after.voxels,
              before.rms, after_init.rms, after.rms, after.max, secs);
  for (const LevelReport& l : res.levels)
    std::printf("    stage %d level %d %lldx%lldx%lld: %d it%s, loss %.5g -> %.5g, %.3f s\n", l.stage + 1, l.level + 1,
                (long long)l.size.x, (long long)l.size.y, (long long)l.size.z, l.iterations,
                l.converged ? " (converged)" : "", l.initial_loss, l.final_loss, l.seconds);
  std::printf("ACCURACY multimodal stroke_T1_to_%s device %s rms_identity %.3f rms_init %.3f rms %.4f max %.4f "
              "voxels %lld seconds %.2f\n",
              fixed_name, device_name(), before.rms, after_init.rms, after.rms, after.max, (long long)after.voxels, secs);
  std::fflush(stdout);
  EXPECT_LT(after.rms, 0.5);
}

}  // namespace

TEST(AccuracyMultimodal, StrokeT1ToT2) { stroke_case("T2"); }
TEST(AccuracyMultimodal, StrokeT1ToFlair) { stroke_case("FLAIR"); }

TEST(AccuracyMultimodal, ChrisT1PdRigidRoundTrip) {
  const std::string t1_path = multimodal("chris_t1.nii.gz"), pd_path = multimodal("chris_pd.nii.gz");
  for (const std::string& p : {t1_path, pd_path})
    if (!fs::exists(p)) GTEST_SKIP() << "real data not found: " << p;
  QuietLogs quiet;
  const Image t1 = read_image(t1_path), pd = read_image(pd_path);
  RegistrationParams p = registration_preset("rigid");
  p.device = device();
  const auto t0 = std::chrono::steady_clock::now();
  const RegistrationResult fwd = register_images(p, t1.voxels, pd.voxels);  // T1 point -> PD point
  const double t_fwd = seconds_since(t0);
  const auto t1s = std::chrono::steady_clock::now();
  const RegistrationResult bwd = register_images(p, pd.voxels, t1.voxels);  // PD point -> T1 point
  const double t_bwd = seconds_since(t1s);
  test::record_result_digest(fwd, "forward");
  test::record_result_digest(bwd, "backward");
  const Affined round = compose(bwd.affine, fwd.affine);
  const float threshold = 0.1f * max_of(t1.voxels);
  const PointError e = point_error(t1.voxels, threshold, round, Affined::identity());
  const PointError direct = point_error(t1.voxels, threshold, fwd.affine, invert_affine(bwd.affine));
  const Vec3d tf = fwd.affine.offset;
  std::printf("  chris T1 <-> PD (%s): forward rotation %.2f degrees, backward %.2f degrees; round trip over %lld "
              "head voxels (T1 >= %.0f): RMS %.3f mm, max %.3f mm (in PD space, |T_f(x) - T_b^-1(x)| RMS %.3f mm); "
              "%.2f s + %.2f s; forward offset (%.1f, %.1f, %.1f) mm\n",
              device_name(), rotation_degrees(fwd.affine.matrix), rotation_degrees(bwd.affine.matrix),
              (long long)e.voxels, threshold, e.rms, e.max, direct.rms, t_fwd, t_bwd, tf.x, tf.y, tf.z);
  std::printf("ACCURACY multimodal chris_T1_PD_roundtrip device %s rms %.4f max %.4f voxels %lld threshold %.1f "
              "seconds_forward %.2f seconds_backward %.2f\n",
              device_name(), e.rms, e.max, (long long)e.voxels, threshold, t_fwd, t_bwd);
  std::fflush(stdout);
  EXPECT_LT(e.rms, 1.0);
}
