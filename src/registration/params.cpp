// Parameter names, validation, presets; the window convergence monitor; affine inversion.

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gigareg/device/lncc.hpp"
#include "gigareg/device/mattes.hpp"
#include "gigareg/error.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/registration.hpp"

namespace gigareg {

const char* to_string(TransformType type) {
  switch (type) {
    case TransformType::Translation: return "Translation";
    case TransformType::Rigid: return "Rigid";
    case TransformType::Affine: return "Affine";
    case TransformType::Greedy: return "Greedy";
    case TransformType::SyN: return "SyN";
  }
  return "?";
}

const char* to_string(MetricType type) {
  switch (type) {
    case MetricType::CC: return "CC";
    case MetricType::MI: return "MI";
    case MetricType::MeanSquares: return "MeanSquares";
  }
  return "?";
}

const char* to_string(DeviceChoice device) {
  switch (device) {
    case DeviceChoice::Cpu: return "cpu";
    case DeviceChoice::Cuda: return "cuda";
    case DeviceChoice::Auto: return "auto";
  }
  return "?";
}

void RegistrationParams::validate() const {
  const std::string where = "registration parameters";
  auto fail = [&](const std::string& what) { throw_error(ErrorKind::InvalidArgument, where, what); };
  auto finite = [](double v) { return std::isfinite(v); };
  if (stages.empty()) fail("no stage: give at least one transform stage");
  bool seen_deformable = false;
  for (std::size_t s = 0; s < stages.size(); ++s) {
    const StageParams& st = stages[s];
    const std::string name = "stage " + std::to_string(s + 1) + " (" + to_string(st.transform) + "): ";
    if (is_linear(st.transform) && seen_deformable)
      fail(name + "a linear stage cannot follow a deformable one");
    if (!is_linear(st.transform)) seen_deformable = true;
    if (!(finite(st.step) && st.step > 0)) fail(name + "the step (gradientStep) must be > 0");
    if (!is_linear(st.transform)) {
      if (!(finite(st.gradient_sigma) && st.gradient_sigma >= 0))
        fail(name + "the gradient smoothing must be >= 0");
      if (!(finite(st.field_sigma) && st.field_sigma >= 0))
        fail(name + "the field smoothing must be >= 0");
      if (!(finite(st.adam_epsilon) && st.adam_epsilon > 0)) fail(name + "adam_epsilon must be > 0");
      if (!(st.adam_beta1 >= 0 && st.adam_beta1 < 1 && st.adam_beta2 >= 0 && st.adam_beta2 < 1))
        fail(name + "Adam's betas must be in [0, 1)");
      const bool adam = st.optimizer == FieldOptimizer::Adam ||
                        (st.optimizer == FieldOptimizer::Auto && st.transform == TransformType::Greedy);
      if (adam && st.adam_bfloat16_moments &&
          (st.adam_beta1 > kBfloat16MaxBeta || st.adam_beta2 > kBfloat16MaxBeta))
        fail(name + "bfloat16 Adam moments need betas <= " + std::to_string(kBfloat16MaxBeta) +
             " (got " + std::to_string(st.adam_beta1) + ", " + std::to_string(st.adam_beta2) +
             "); use float32 moments");
    }
    const std::size_t levels = st.convergence.iterations.size();
    if (levels == 0) fail(name + "no level: the iteration list is empty");
    if (st.shrink_factors.size() != levels)
      fail(name + std::to_string(levels) + " levels of iterations but " +
           std::to_string(st.shrink_factors.size()) + " shrink factors");
    if (st.smoothing_sigmas.size() != levels)
      fail(name + std::to_string(levels) + " levels of iterations but " +
           std::to_string(st.smoothing_sigmas.size()) + " smoothing sigmas");
    for (int it : st.convergence.iterations)
      if (it < 0) fail(name + "iteration counts must be >= 0");
    for (double f : st.shrink_factors)
      if (!(finite(f) && f >= 1)) fail(name + "shrink factors must be >= 1");
    for (double sg : st.smoothing_sigmas)
      if (!(finite(sg) && sg >= 0)) fail(name + "smoothing sigmas must be >= 0");
    if (st.convergence.window < 1) fail(name + "the convergence window must be >= 1");
    if (!finite(st.convergence.threshold)) fail(name + "the convergence threshold must be finite");
    const MetricParams& m = st.metric;
    if (!(finite(m.weight) && m.weight > 0)) fail(name + "the metric weight must be > 0");
    if (m.type == MetricType::CC && (m.radius < 1 || m.radius > kLnccMaxRadius))
      fail(name + "the CC radius must be 1.." + std::to_string(kLnccMaxRadius));
    if (m.type == MetricType::CC && !(finite(m.cc_epsilon) && m.cc_epsilon > 0))
      fail(name + "the CC epsilon must be > 0");
    if (m.type == MetricType::CC && !(finite(m.cc_min_std) && m.cc_min_std >= 0 && m.cc_min_std < 1))
      fail(name + "cc_min_std must be in [0, 1)");
    if (m.type == MetricType::MI && (m.bins < kMattesMinBins || m.bins > kMattesMaxBins))
      fail(name + "MI bins must be " + std::to_string(kMattesMinBins) + ".." +
           std::to_string(kMattesMaxBins));
  }
  const IntensityPreprocessing& ip = intensities;
  if (!(finite(ip.lower_quantile) && finite(ip.upper_quantile) && ip.lower_quantile >= 0 &&
        ip.lower_quantile < ip.upper_quantile && ip.upper_quantile <= 1))
    fail("the winsorizing quantiles must satisfy 0 <= lower < upper <= 1");
  if (inverse_iterations < 0) fail("inverse iterations must be >= 0");
  if (!(finite(inverse_tolerance_mm) && inverse_tolerance_mm >= 0))
    fail("the inverse tolerance must be >= 0");
  for (double v : initial.affine.matrix.m)
    if (!finite(v)) fail("the initial affine is not finite");
}

RegistrationParams registration_preset(const std::string& name) {
  RegistrationParams p;
  p.initial.type = InitialTransformType::CenterOfMass;
  auto linear = [](TransformType t) {
    StageParams s;
    s.transform = t;
    s.step = 0.1;
    s.metric.type = MetricType::MI;
    s.metric.bins = 32;
    s.convergence = {{200, 100, 50}, 1e-6, 10};
    s.shrink_factors = {4, 2, 1};
    s.smoothing_sigmas = {2, 1, 0};
    s.sigmas_in_mm = false;
    return s;
  };
  auto deformable = [](TransformType t) {
    StageParams s;
    s.transform = t;
    // Adam for Greedy and SyN (it recovered more of a known warp than ANTs' plain gradient with its
    // usual SyN[0.1-0.25,3,0-0.5], docs/registration.md). Steps and sigmas (voxels) tuned on the
    // cfmi brain pairs 01<-02, 04<-06, 02<-04 with a moments initialisation (docs/accuracy.md):
    // greedy step 0.25, sigmas 1.5 (gradient) and 0.5 (field): mean aseg Dice 0.767 in the sweep
    // (0.706 with the former 0.1 / 2 / 1), no folds. SyN step 0.25, sigmas 1.25 and 0.95: 0.766,
    // non-positive Jacobians < 1e-4 on every pair (6.7e-5 on 02<-04); chosen again after the LNCC
    // variance floors (the former 0.2 / 1.5 / 0.75 then folded 5e-4 of 02<-04; a field sigma of
    // 0.5 folds 0.1-0.6% of the voxels in SyN).
    const bool syn = t == TransformType::SyN;
    s.step = 0.25;
    s.gradient_sigma = syn ? 1.25 : 1.5;
    s.field_sigma = syn ? 0.95 : 0.5;
    s.metric.type = MetricType::CC;
    s.metric.radius = 2;
    s.optimizer = FieldOptimizer::Adam;
    s.convergence = {{100, 70, 40}, 1e-6, 10};
    s.shrink_factors = {4, 2, 1};
    s.smoothing_sigmas = {2, 1, 0};
    s.sigmas_in_mm = false;
    return s;
  };
  if (name == "rigid") {
    p.stages = {linear(TransformType::Rigid)};
  } else if (name == "affine") {
    p.stages = {linear(TransformType::Rigid), linear(TransformType::Affine)};
  } else if (name == "greedy") {
    p.stages = {linear(TransformType::Rigid), linear(TransformType::Affine),
                deformable(TransformType::Greedy)};
  } else if (name == "syn") {
    p.stages = {linear(TransformType::Rigid), linear(TransformType::Affine),
                deformable(TransformType::SyN)};
  } else {
    throw_error(ErrorKind::InvalidArgument, "--preset",
                "unknown preset '" + name + "' (rigid, affine, greedy, syn)");
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
ConvergenceMonitor::ConvergenceMonitor(int window) : window_(window) {
  GIGAREG_REQUIRE(window >= 1, "the convergence window must be >= 1");
}

void ConvergenceMonitor::reset() {
  values_.clear();
  total_ = 0;
}

void ConvergenceMonitor::add(double loss) {
  values_.push_back(loss);
  if (int(values_.size()) > window_) values_.erase(values_.begin());
  total_ += std::abs(loss);
}

double ConvergenceMonitor::value() const {
  // A window of one value has no slope: such a level runs all its iterations.
  if (window_ < 2 || int(values_.size()) < window_) return std::numeric_limits<double>::max();
  // ITK fits a linear B-spline with 2 control points (phi0 at t = 0, phi1 at t = 1) by its
  // one-level scattered-data approximation: each point n at t_n with weights B0 = 1 - t,
  // B1 = t contributes delta_c = B_c z_n / (B0^2 + B1^2) weighted by B_c^2, so
  //   phi_c = sum_n B_c^3 z_n / (B0^2 + B1^2) / sum_n B_c^2.
  // The curve's slope is phi1 - phi0 everywhere; the convergence value is minus that slope.
  // The arithmetic follows ITK's types: the parameter t, the weights and the omega sums are
  // float (the filter's RealType), the delta sums and z double; a point on the domain's end
  // (t = 1) is moved in by the filter's epsilon (1e-3 of the 0.1 spacing).
  const float eps = float(1.0 * 0.1 * 1e-3);
  double delta[2] = {0, 0};
  float omega[2] = {0, 0};
  for (int n = 0; n < window_; ++n) {
    float t = float(n) / float(window_ - 1);
    if (std::abs(t - 1.0f) <= eps) t = 1.0f - eps;
    const double z = total_ > 0 ? values_[std::size_t(n)] / total_ : 0.0;
    const float b[2] = {float(1.0 - std::abs(double(t))), float(1.0 - std::abs(double(t - 1.0f)))};
    float w2 = 0.0f;
    for (float bc : b) w2 += bc * bc;
    for (int c = 0; c < 2; ++c) {
      omega[c] += b[c] * b[c];
      delta[c] += z * double(b[c] * b[c] * b[c] / w2);
    }
  }
  double num[2] = {delta[0], delta[1]};
  const double den[2] = {double(omega[0]), double(omega[1])};
  const double phi0 = den[0] > 0 ? num[0] / den[0] : 0.0;
  const double phi1 = den[1] > 0 ? num[1] / den[1] : 0.0;
  return -(phi1 - phi0);
}

// ---------------------------------------------------------------------------------------------
Affined invert_affine(const Affined& a) {
  Eigen::Matrix3d m;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m(r, c) = a.matrix(r, c);
  const Eigen::FullPivLU<Eigen::Matrix3d> lu(m);
  if (!lu.isInvertible() || !std::isfinite(m.determinant()))
    throw_error(ErrorKind::InvalidArgument, "invert_affine", "the affine matrix is singular");
  const Eigen::Matrix3d inv = lu.inverse();
  Affined out;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) out.matrix(r, c) = inv(r, c);
  const Vec3d t = out.matrix * a.offset;
  out.offset = {-t.x, -t.y, -t.z};
  return out;
}

double LevelReport::median_iteration_seconds() const {
  if (iteration_seconds.empty()) return 0.0;
  std::vector<double> t = iteration_seconds;
  std::nth_element(t.begin(), t.begin() + std::ptrdiff_t(t.size() / 2), t.end());
  return t[t.size() / 2];
}

}  // namespace gigareg
