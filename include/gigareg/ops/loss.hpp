#pragma once
// Image-similarity losses: mean squares, local normalised cross-correlation (LNCC, box or
// Gaussian window) and Mattes mutual information, each with a fused forward pass and the exact
// gradient with respect to the warped moving image W, an optional fixed-space mask, on both
// backends. Losses are minimised: mean squares, -mean LNCC, -MI.
//
// One convention for every loss. An op reports two numbers, S and C, as SlicePartials with
// kLossTerms = 2 terms ({S, C} per slice; reduce_slices sums them) and the loss is
//     loss = S / C.
// The gradient it writes is dS / dW (not dLoss / dW): the caller divides by the GLOBAL C, so
// sharded ranks write their gradient without knowing the total. When C is 0 (everything masked
// out) the loss is defined as 0 with a zero gradient.
//   mean squares: S = sum over masked voxels of (W - F)^2, C = their number.
//   LNCC:         S = sum over masked window centres of -cc(x), C = their number.
//   Mattes MI:    S = -MI * T, C = T, T the total Parzen weight (= masked voxel count, up to
//                 the fixed-point rounding); the partials have ONE slice and, in a sharded run,
//                 are the same on every rank (computed from the summed histogram): do not add
//                 them across ranks.
//
// Views: fixed F and warped moving W are float views of the same global grid; the mask, when
// its data is non-null, is a float view of that grid and a voxel counts where mask > 0.5
// (mask.data == nullptr: no mask); grad.data == nullptr computes the loss only, partials.data
// == nullptr the gradient only. Only voxels of `owned` are written (every one of them, zero
// where the loss does not depend on W there). For mean squares and LNCC every (masked) voxel or
// centre of `owned` counts once in S and C, so per-rank partials of a sharded run add up.
// Inputs must contain the op's input box (owned grown by the halo below, clipped to the grid).

#include <cstdint>
#include <vector>

#include "gigareg/device/lncc.hpp"
#include "gigareg/device/mattes.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

/// Terms of a loss's SlicePartials: {S, C} (see above).
inline constexpr int kLossTerms = 2;

struct LossValue {
  double sum = 0.0;    // S
  double count = 0.0;  // C
  double value() const { return count > 0.0 ? sum / count : 0.0; }
};

/// reduce_slices, as a LossValue (synchronises with the device on Cuda).
LossValue reduce_loss(const Context& ctx, const SlicePartials& partials);

// ------------------------------------------------------------------------------------------
// Mean squares. Halo 0: F, W and the mask must contain `owned`.
//   S = sum (W - F)^2 (double), grad = dS/dW = 2 (W - F) on masked voxels, 0 elsewhere.
// partials: owned.size.z slices x kLossTerms.
void mse_loss(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad);

// ------------------------------------------------------------------------------------------
// LNCC. Per-centre formulas, window clipping and the adjoint coefficients: device/lncc.hpp.
//   cc(x) = cross^2 / (varF varW + eps) from weighted window MEANS (not sums), so eps is in
//   (intensity)^4 and does not depend on the window size; the window is clipped at the global
//   grid edge (only in-grid voxels are summed, n(x) counts their weight).
//   S = -sum over masked centres x in `owned` of cc(x).
//   Exact gradient (default): dS/dW(y) = sum over masked centres x with y in N(x) of
//   k(x, y) (a(x) F(y) + b(x) W(y) + c(x)): the windows of centres OUTSIDE `owned` count too, so
//   the gradient on `owned` is exactly the whole-volume gradient restricted to `owned` (a slab
//   needs no reverse halo exchange). Halo: F and W must contain owned grown by 2H, the mask
//   owned grown by H (clipped), H the window radius.
//   AntsApproximation: ANTs' CrossCorrelation local derivative, i.e. the exact gradient with the
//   adjoint coefficients of the window centred at y held constant over its window:
//   dS/dW(y) ~= n(y) (a(y) F(y) + b(y) W(y) + c(y)) for a masked centre y, 0 elsewhere.
//   Halo H for F and W, 0 for the mask.
//   Memory: no per-voxel scratch (the window sums are recomputed per tile with their halo).
//   Precision: the CPU reference sums in double, the CUDA kernel in float over intensities
//   shifted by a per-tile constant (cc is shift-invariant), with running box sums and the
//   hardware reciprocal. The CPU result is bitwise independent of tiling, threads and z-slab
//   sharding; the CUDA result is deterministic for a given owned box and agrees with the CPU and
//   across slabs within float rounding (tests: loss 1e-5, gradient 1e-4 normwise on random
//   inputs). Where windows are nearly flat beside bright tissue the float variances are rounding
//   noise: set the variance floors (LnccParams); with them a blurred brain on a zero background
//   agrees within 1e-4 (loss) and 1e-3 (gradient, normwise), limited by the windows just above
//   the floors.
//   CUDA limits: H <= kLnccMaxRadius (both backends), and a view's x-y plane must hold fewer than
//   2^31 elements (in-plane offsets are 32-bit).
enum class LnccWindow { Box, Gaussian };
enum class LnccGradient { Exact, AntsApproximation };

struct LnccParams {
  LnccWindow window = LnccWindow::Box;
  int radius = 2;              // Box: the window is 2 radius + 1 voxels wide along each axis
  double sigma = 1.0;          // Gaussian: standard deviation in voxels
  double truncation = 3.0;     // Gaussian: support radius H = ceil(truncation * sigma)
  double eps = 1e-5;           // added to varF varW
  // Variance floors (intensity^2 units): a window whose varF is below min_variance_fixed or whose
  // varW is below min_variance_warped counts as flat (cc = 0, no gradient). 0: off. The CUDA sums
  // are float: in a nearly flat window beside bright tissue its variances are rounding noise
  // (about 1e-7 x the tile's squared intensities), and without a floor cc there is arbitrary.
  // The registration sets both to (cc_min_std x intensity range)^2.
  double min_variance_fixed = 0.0;
  double min_variance_warped = 0.0;
  LnccGradient gradient = LnccGradient::Exact;
};

/// The window support radius H (box: radius; Gaussian: ceil(truncation sigma)). Throws
/// InvalidArgument unless 1 <= H <= kLnccMaxRadius and the parameters are finite and positive.
int lncc_window_radius(const LnccParams& params);
/// The window weights both backends use: w[H + d] = 1 (box) or exp(-d^2 / (2 sigma^2)) (float).
LnccTaps lncc_window_taps(const LnccParams& params);
/// The op's halos, stated once: F and W are read 2H around the owned box with the exact gradient
/// (windows of the windows), H with ANTs' approximation; the mask H or 0.
Index3 lncc_input_halo(const LnccParams& params);
Index3 lncc_mask_halo(const LnccParams& params);
/// The boxes the inputs must contain for `owned`: owned grown by those halos, clipped.
Box lncc_input_box(const Box& owned, Index3 global_size, const LnccParams& params);
Box lncc_mask_box(const Box& owned, Index3 global_size, const LnccParams& params);

/// partials: owned.size.z slices x kLossTerms.
void lncc_loss(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccParams& params,
               SlicePartials partials, VolumeView<float> grad);

// ------------------------------------------------------------------------------------------
// Mattes mutual information (binning and Parzen windows: device/mattes.hpp).
//   Joint histogram h(i, j) = sum over masked voxels of w_i(F) w_j(W): cubic B-spline window on
//   the moving intensity, zero-order (box) window on the fixed intensity by default (ITK's
//   MattesMutualInformation), optionally cubic there too. p = h / T, T = sum h. MI =
//   sum p log(p / (p_fixed p_moving)). The gradient is exact for that Parzen estimate:
//   dS/dW(x) = -sum_ij log(p_ij / (p_i p_j)) w_i(F(x)) dw_j(W(x))/dW (T does not depend on W).
// Three phases, so that a distributed run sums histograms across ranks exactly:
//   (a) mattes_histogram: owned voxels -> int64 fixed-point joint histogram (2^26 per unit
//       weight, each contribution rounded on its own: order-independent, so sums over ranks,
//       blocks and threads are exact and deterministic; equal on both backends);
//   (b) mattes_table: (global) histogram -> MI as partials {-MI T, T} and the bins x bins float
//       gradient table log(p_ij / (p_i p_j)) (CPU: on the host; Cuda: one small kernel, no sync);
//   (c) mattes_gradient: per-voxel gradient from the table.
// Halo 0 everywhere. Intensity ranges come from the caller (intensity_range below gives the
// global min and max); intensities outside them are clamped, with zero derivative.
enum class ParzenWindow { Box, CubicBSpline };

struct MattesParams {
  int bins = 32;  // kMattesMinBins..kMattesMaxBins
  float fixed_min = 0.0f, fixed_max = 1.0f;
  float moving_min = 0.0f, moving_max = 1.0f;
  ParzenWindow fixed_window = ParzenWindow::Box;
};

/// bins x bins int64, row-major [fixed bin][moving bin], in the backend's memory.
struct JointHistogram {
  std::int64_t* data = nullptr;
  int bins = 0;
};
/// bins x bins float, row-major [fixed bin][moving bin], in the backend's memory.
struct MattesTable {
  float* data = nullptr;
  int bins = 0;
};

/// The intensity-to-bin maps both backends use (validates params).
MattesAxis mattes_fixed_axis(const MattesParams& params);
MattesAxis mattes_moving_axis(const MattesParams& params);

/// (a) Overwrites `hist` with the joint histogram of the (masked) voxels of `owned`.
void mattes_histogram(const Context& ctx, VolumeView<const float> fixed,
                      VolumeView<const float> warped, VolumeView<const float> mask,
                      const Box& owned, const MattesParams& params, JointHistogram hist);
/// (b) MI and the gradient table from a (globally summed) histogram. value: 1 slice x kLossTerms
/// (may be null); table may be null for the value only.
void mattes_table(const Context& ctx, JointHistogram hist, const MattesParams& params,
                  MattesTable table, SlicePartials value);
/// (c) grad = dS/dW on `owned` (0 on unmasked voxels).
void mattes_gradient(const Context& ctx, VolumeView<const float> fixed,
                     VolumeView<const float> warped, VolumeView<const float> mask,
                     const Box& owned, const MattesParams& params, MattesTable table,
                     VolumeView<float> grad);
/// (a)-(c) for a single process (scratch: the histogram and the table, bins^2 each).
void mattes_mi(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const MattesParams& params,
               SlicePartials value, VolumeView<float> grad);

// ------------------------------------------------------------------------------------------
// Intensity range of the (masked) voxels of `owned`: partials with owned.size.z slices and
// kRangeTerms = 2 terms {min, max} per slice (+inf, -inf for a slice with no voxel; NaNs are
// skipped). Combine with reduce_intensity_range (or gather the slices across ranks and take
// min / max: not reduce_slices, which adds).
inline constexpr int kRangeTerms = 2;
struct IntensityRange {
  double min = 0.0;
  double max = 0.0;
  bool empty() const { return !(min <= max); }
};
void intensity_range(const Context& ctx, VolumeView<const float> image,
                     VolumeView<const float> mask, const Box& owned, SlicePartials partials);
IntensityRange reduce_intensity_range(const Context& ctx, const SlicePartials& partials);

}  // namespace gigareg
