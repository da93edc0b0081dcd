#pragma once
// The parameters of a registration (gigareg/registration.hpp): transforms and metrics of the
// stages, convergence, pyramid levels, optimiser settings, initialisation, backend, and the
// ANTs-like presets. Validation is RegistrationParams::validate (src/registration/params.cpp).

#include <functional>
#include <string>
#include <vector>

#include "gigareg/geometry.hpp"

namespace gigareg {

enum class TransformType {
  Translation,  // 3 parameters
  Rigid,        // 6: rotation (about the transform centre) and translation
  Affine,       // 12: matrix (about the centre) and translation
  Greedy,       // displacement field, greedy compositive updates (ANTs GaussianDisplacementField)
  SyN,          // symmetric: forward and inverse half-way fields (ANTs SyN)
};
const char* to_string(TransformType type);
inline bool is_linear(TransformType t) {
  return t == TransformType::Translation || t == TransformType::Rigid || t == TransformType::Affine;
}

enum class MetricType {
  CC,           // local normalised cross-correlation, box window (ANTs CC)
  MI,           // Mattes mutual information (ANTs MI / Mattes)
  MeanSquares,  // mean squared difference (ANTs MeanSquares)
};
const char* to_string(MetricType type);

struct MetricParams {
  MetricType type = MetricType::CC;
  double weight = 1.0;  // accepted for ANTs compatibility; one metric per stage, so it only scales
  int radius = 2;       // CC: the window is 2 radius + 1 voxels wide (ANTs' radius)
  /// CC: only windows whose fixed-image standard deviation is at least this fraction of the
  /// fixed intensity range count (ANTs also skips windows of (nearly) zero variance). The loss
  /// op's cc = cross^2 / (varF varW + eps) rewards importing moving-image variance into windows
  /// whose fixed variance is comparable to eps (for identical images it moves away from the
  /// identity); excluding low-variance windows removes that bias. The same fraction of each
  /// image's metric range (the fixed one's within its mask; the moving one's over its grid and 0,
  /// as for cc_epsilon) is also the floor of the loss's window standard deviations (below it a
  /// window counts as flat: cc = 0, no gradient; see LnccParams). For an image far from 0 with no
  /// background, the moving floor is then a larger share of its own span. 0 keeps every window.
  double cc_min_std = 0.01;
  /// CC: the epsilon added to varF varW, for intensities scaled to [0, 1] (it is multiplied by
  /// (range_F range_M)^2, so the metric does not depend on the intensity scale). Keep it far
  /// below cc_min_std^4.
  double cc_epsilon = 1e-12;
  int bins = 32;        // MI: histogram bins
};

/// ANTs' -c [iterations, threshold, window]: at each level, iterate until `iterations[level]`
/// iterations are done or the convergence value (ConvergenceMonitor) is <= threshold.
struct ConvergenceParams {
  std::vector<int> iterations{100, 70, 50};  // per level, coarse to fine
  double threshold = 1e-6;
  int window = 10;
};

/// The optimiser of a deformable stage's field.
enum class FieldOptimizer {
  Auto,             // Adam for Greedy, GradientDescent for SyN
  Adam,             // FireANTs: per-voxel adaptive direction (Adam), then max-norm normalised
  GradientDescent,  // ANTs: the smoothed gradient itself, max-norm normalised
};

struct StageParams {
  TransformType transform = TransformType::Affine;
  /// The step size, as ANTs' gradientStep g.
  ///   Linear stages: Adam's learning rate in voxels of the level: each parameter, scaled to the
  ///   physical shift (mm) it causes over the fixed image, moves by at most about
  ///   g * (smallest level spacing) per iteration.
  ///   Deformable stages: each update is normalised so that its largest displacement is
  ///   g * (smallest level spacing) mm (ANTs' update-field scaling), after Adam.
  double step = 0.1;
  /// Deformable stages: Gaussian sigmas in voxels of the level grid for the gradient (update)
  /// field and for the total field. The CLI converts ANTs' variances (SyN[g, var, var]) to these.
  double gradient_sigma = 2.0;
  double field_sigma = 1.0;
  /// Deformable stages: how the smoothed gradient becomes an update. Adam sees the gradient
  /// normalised to a largest vector norm of 1 and uses adam_epsilon on that scale, so that voxels
  /// with gradients far below the largest ones (background, the fringe of the smoothing kernel)
  /// take proportionally small steps instead of being amplified to full ones.
  FieldOptimizer optimizer = FieldOptimizer::Auto;
  double adam_epsilon = 0.1;
  double adam_beta1 = 0.9, adam_beta2 = 0.99;
  /// Store Adam's two moments as bfloat16 (6 bytes per voxel each instead of 12; the arithmetic
  /// stays float, see adam_update in gigareg/ops/optim.hpp). Needs both betas <= 0.996.
  bool adam_bfloat16_moments = true;
  MetricParams metric;
  ConvergenceParams convergence;
  std::vector<double> shrink_factors{4, 2, 1};      // per level (>= 1)
  std::vector<double> smoothing_sigmas{2, 1, 0};    // per level, of the full-resolution images
  bool sigmas_in_mm = false;                        // false: voxels of the full-resolution grid
};

enum class InitialTransformType {
  Identity,        // A = identity (or `affine` when given)
  GeometricCenter, // ANTs -r [f,m,0]: translate the fixed grid's centre onto the moving grid's
  CenterOfMass,    // ANTs -r [f,m,1]: intensity-weighted centres of mass
  Origins,         // ANTs -r [f,m,2]: translate the fixed origin onto the moving origin
  Moments,         // [f,m,3] (gigareg): centres of mass and principal axes (a proper rotation)
  Given,           // `affine` (e.g. read from a .mat file)
};

struct InitialTransform {
  InitialTransformType type = InitialTransformType::Identity;
  Affined affine = Affined::identity();  // for Given: physical fixed -> moving
};

enum class DeviceChoice { Cpu, Cuda, Auto };
const char* to_string(DeviceChoice device);

/// One iteration's report (progress callback and logs).
struct IterationReport {
  int stage = 0;            // 0-based
  TransformType transform = TransformType::Affine;
  int level = 0;            // 0-based, coarse to fine
  int levels = 1;
  int iteration = 0;        // 0-based within the level
  double loss = 0;          // the stage metric (minimised: MSE, -mean LNCC, -MI)
  double convergence = 0;   // the window convergence value (huge until the window is full)
};

/// ANTs' preprocessing of the images the metrics see (antsRegistration
/// --winsorize-image-intensities [lower,upper] and --use-histogram-matching 1), as ANTs defines it
/// (docs/registration.md, "Intensity preprocessing"): each image's intensities between the two
/// quantiles mapped onto [0, 1] and the rest clamped; with matching, the moving image's histogram
/// then mapped onto the fixed image's. The initialisation and the warped outputs use the images
/// as read. Off by default: the metrics see the images' own intensities.
struct IntensityPreprocessing {
  double lower_quantile = 0.0;
  double upper_quantile = 1.0;
  bool histogram_matching = false;
  /// Whether anything is done: quantiles other than [0, 1], or matching. (ANTs also maps [min,
  /// max] onto [0, 1] with the default quantiles; CC and MI do not depend on that scale, and
  /// gigareg's metrics see the intensities as read unless asked.)
  bool active() const { return lower_quantile != 0.0 || upper_quantile != 1.0 || histogram_matching; }
};

struct RegistrationParams {
  InitialTransform initial;
  IntensityPreprocessing intensities;
  std::vector<StageParams> stages;
  DeviceChoice device = DeviceChoice::Auto;
  /// Inverse of the deformable field (prefix1InverseWarp): fixed-point iterations and tolerance.
  int inverse_iterations = 50;
  double inverse_tolerance_mm = 1e-3;
  bool compute_inverse = true;
  /// Called after every iteration (on the host, between iterations). May be empty.
  std::function<void(const IterationReport&)> progress;

  /// Throws Error(InvalidArgument, "registration parameters", ...) on the first problem found:
  /// no stage, a linear stage after a deformable one, mismatched level counts, non-positive
  /// steps, shrink factors < 1, negative sigmas, CC radius outside 1..kLnccMaxRadius, bins
  /// outside 5..128, a window < 1, iterations < 0.
  void validate() const;
};

/// The ANTs-like presets of `gigareg register --preset`: "rigid", "affine" (rigid then affine,
/// Mattes MI), "greedy" and "syn" (affine stages, then a CC deformable stage).
RegistrationParams registration_preset(const std::string& name);

}  // namespace gigareg
