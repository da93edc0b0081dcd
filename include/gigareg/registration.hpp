#pragma once
// The registration pipeline: initialisation (image centres, centres of mass, principal axes),
// linear stages (translation, rigid, affine) and deformable stages (greedy, SyN), each over a
// pyramid of levels, on the CPU reference backend or on CUDA through the same ops.
//
// What it computes (all maths in physical LPS space, mm; fixed and moving may be on different
// grids): a transform that maps a fixed-space point x to the moving-space point
//     T(x) = A(x + u(x))
// with A an affine (initial transform and linear stages collapsed into one) and u a displacement
// field on the fixed grid (deformable stages). That is antsApplyTransforms' order for
// `-t prefix1Warp.nii.gz -t prefix0GenericAffine.mat`, and the warp op's T(x) = A(x + u(x)).
//
// The command line of `gigareg register` is parsed into the structs below, and printed back, by
// gigareg/register_command.hpp; the parsers of single antsRegistration / antsApplyTransforms
// option values live in namespace ants below, so an embedding program accepts the same strings.
// docs/registration.md describes the algorithm, the parameters and the output files.

#include <string>
#include <vector>

#include "gigareg/device/interpolate.hpp"
#include "gigareg/device/math.hpp"
#include "gigareg/error.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/registration_result.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

// ---------------------------------------------------------------------------------------------
// Registering images (parameters: registration_params.hpp; results: registration_result.hpp)

/// Registers host volumes: `moving` is mapped onto `fixed`. Masks (optional, nullptr = none) are
/// host volumes on the grid of their image; a voxel counts where mask > 0.5. The moving mask
/// excludes fixed voxels whose sample falls outside it (ANTs' semantics). The backend is
/// params.device (Auto: CUDA when available); on CUDA everything runs in device memory and
/// the host synchronises once per iteration (the loss for the convergence check; linear stages
/// also read their 12-term gradient there).
///
/// `partition` (optional): run as one of several processes that share the work (see
/// partition.hpp; gigareg::dist::ShardPartition under mpirun). Every process passes the same
/// parameters and volumes holding (at least) registration_input_planes of the images (whole
/// images do too); each computes its slab of every level grid, and rank 0 receives the
/// whole result (the warp, inverse warp and warped image are empty on the other ranks; the affine
/// and the level reports are everywhere). The result is bitwise the single-process one on the
/// CPU backend. SyN stages run in one process only.
RegistrationResult register_images(const RegistrationParams& params, const Volume<float>& fixed,
                                   const Volume<float>& moving,
                                   const Volume<float>* fixed_mask = nullptr,
                                   const Volume<float>* moving_mask = nullptr,
                                   const Partition* partition = nullptr);

/// The planes of the full-resolution inputs that this process of `partition` needs, as
/// [lo.z, lo.z + size.z) boxes of whole x-y planes: for the fixed image (and its mask) the planes
/// under every level's slab with the metric's halo, the blur and the linear taps; for the moving
/// image (and mask) its own slab of planes (partition.owned: the windows fetch the rest). One
/// process: the whole grids. register_files reads exactly these with read_image_slab.
struct InputPlanes {
  Box fixed, moving;
};
InputPlanes registration_input_planes(const RegistrationParams& params, const Geometry& fixed,
                                      const Geometry& moving, const Partition& partition);

/// File-level wrapper (what `gigareg register` runs). Writes exactly what antsRegistration writes:
///   prefix0GenericAffine.mat                    always (identity when there is no linear part)
///   prefix1Warp.nii.gz, prefix1InverseWarp.nii.gz  when there is a deformable stage
///   warped / inverse_warped                     when the paths are given
/// so that `antsApplyTransforms -t prefix1Warp.nii.gz -t prefix0GenericAffine.mat` (or
/// `gigareg apply` with the same options) reproduces `warped`. Writes go through temporaries (no
/// partial files). A prefix ending in '/' writes into that directory (created if missing).
struct RegistrationFiles {
  std::string fixed, moving;
  std::string fixed_mask, moving_mask;   // empty: none
  std::string output_prefix;
  std::string warped;                    // empty: not written
  std::string inverse_warped;            // the fixed image in the moving grid; empty: not written
  /// A PNG of the fixed image beside the warped one (gigareg/qc.hpp); empty: not made. Needs the
  /// warped image (a registration whose result holds one).
  std::string qc_picture;
  std::string initial_transform;         // an affine transform file (empty: params.initial)
  bool invert_initial_transform = false;
  /// The warps' file extension: ".nii.gz" as ANTs writes them, or ".nii" (uncompressed: written
  /// at disk speed, which matters for gigavoxel fields, and readable by slabs).
  std::string warp_extension = ".nii.gz";
};

struct RegistrationOutputs {
  std::string affine, warp, inverse_warp, warped, inverse_warped, qc_picture;  // paths written ("" if not)
};

/// With a partition, every process reads only the planes it needs and writes its own planes of
/// the warp, inverse warp, warped image and inverse-warped image (write_sharded_image: no process
/// holds a whole output); rank 0 writes the affine transform and the QC picture (made from every
/// process's planes). In one process the inverse-warped image and the QC picture are made while
/// the other outputs are written. The returned warp, inverse warp and warped image are in the backend's
/// memory (device volumes after a CUDA registration: the files are written from the GPU by
/// slabs, and the host never holds them whole), on the process's owned planes under a partition
/// (volumes of whole x-y planes that contain partition->owned(fixed grid)).
RegistrationResult register_files(const RegistrationParams& params, const RegistrationFiles& files,
                                  RegistrationOutputs* written = nullptr,
                                  const Partition* partition = nullptr);

/// Writes a result's transforms (and warped image, if `warped_path` is not empty) as
/// register_files does; returns the paths written. With a partition of several processes the
/// call is collective and `result` holds each process's planes (as register_files returns them).
RegistrationOutputs write_registration_outputs(const RegistrationResult& result,
                                               const std::string& output_prefix,
                                               const std::string& warped_path = "",
                                               const std::string& warp_extension = ".nii.gz",
                                               const Partition* partition = nullptr);

// ---------------------------------------------------------------------------------------------
// Pieces, exposed for tests and for programs that build their own pipeline.

/// ANTs' window convergence monitor (itk::Function::WindowConvergenceMonitoringFunction): keeps
/// the last `window` loss values; each is divided by the sum of |value| over ALL values added
/// since the last reset; the convergence value is minus the slope, at the window's end, of a
/// linear B-spline (2 control points) fitted to those values against t = n / (window - 1) by
/// ITK's one-level B-spline approximation (its BSplineScatteredDataPointSetToImageFilter).
/// Until the window is full (and always for a window of 1, which has no slope) the value is the
/// largest double. A level stops when the value is
/// <= the threshold.
class ConvergenceMonitor {
 public:
  explicit ConvergenceMonitor(int window = 10);
  void add(double loss);
  void reset();
  double value() const;
  bool converged(double threshold) const { return value() <= threshold; }
  int window() const { return window_; }

 private:
  int window_;
  std::vector<double> values_;  // the last `window` values
  double total_ = 0;            // sum of |value| since the reset
};

/// Intensity-weighted centre of mass (physical LPS, mm) and second central moments (3x3
/// covariance, mm^2) of a host volume; negative intensities count as 0.
struct ImageMoments {
  double mass = 0;
  Vec3d center{0, 0, 0};
  Mat3d covariance{};
};
ImageMoments image_moments(const Volume<float>& image);
/// The same over the processes of `partition`: `image` holds (at least) this process's slab of
/// planes (partition.owned); the per-plane sums of all processes are added in plane order, so the
/// result is the single-process one for any number of processes (collective).
ImageMoments image_moments(const Volume<float>& image, const Partition& partition);

/// The initial affine (physical fixed -> moving) of `init`, and the centre to write it about.
/// Moments: y = R (x - c_f) + c_m with R a proper rotation (det +1: it never flips a brain)
/// from the principal axes E of both images (intensity-weighted second moments):
///  - all three second moments of both images at least 10% apart: R = E_m P S E_f^T, P S the
///    signed permutation, among those giving det R = +1, that makes R closest to the identity
///    (largest trace);
///  - only the largest (or only the smallest) well separated, as for brains, whose left-right
///    and inferior-superior moments are within 5-10%: the smallest rotation (<= 90 degrees)
///    taking that axis of the fixed image onto the moving one's;
///  - neither: the centres of mass only (with a warning).
struct Initialization {
  Affined affine = Affined::identity();
  Vec3d center{0, 0, 0};
};
/// With a partition, fixed and moving hold this process's planes (collective).
Initialization initialize_transform(const InitialTransform& init, const Volume<float>& fixed,
                                    const Volume<float>& moving, const Partition* partition = nullptr);

/// Resamples `moving` into `reference`'s grid through the transform list of antsApplyTransforms:
/// transforms[0] is applied FIRST to a reference point (so {warp, affine} gives A(x + u(x))).
/// Each entry is an affine (optionally inverted) or a displacement field (on any grid). A field
/// moves a point as itk::DisplacementFieldTransform does: trilinearly inside its grid, edge value
/// over the last half voxel, and not at all (zero displacement) beyond it. The image is sampled
/// as itk::ResampleImageFilter does: interpolated where the point lies in the moving grid's
/// buffer ([-0.5, size - 0.5) in index units, neighbours clamped to the grid), `default_value`
/// elsewhere (antsApplyTransforms -f).
struct TransformEntry {
  bool is_field = false;
  Affined affine = Affined::identity();    // when !is_field (already inverted if requested)
  const Volume<float>* field = nullptr;    // when is_field: 3-component host volume (mm)
};
Volume<float> apply_transforms(const Volume<float>& moving, const Geometry& reference,
                               const std::vector<TransformEntry>& transforms,
                               Interpolation interpolation = Interpolation::Linear,
                               DeviceChoice device = DeviceChoice::Cpu, float default_value = 0.f);

/// antsApplyTransforms at file level: -i input, -r reference, -o output, -t list in command-line
/// order, `inverse[k]` for [file,1]. Linear and BSpline output is float32; NearestNeighbor /
/// GenericLabel keep the input's pixel type. `default_value`: antsApplyTransforms -f.
struct ApplyFiles {
  std::string input, reference, output;
  std::vector<std::string> transforms;
  std::vector<bool> inverse;
  Interpolation interpolation = Interpolation::Linear;
  DeviceChoice device = DeviceChoice::Cpu;
  double default_value = 0.0;
};
void apply_transform_files(const ApplyFiles& files);

/// The inverse of an affine map (throws InvalidArgument when singular).
Affined invert_affine(const Affined& a);

// ---------------------------------------------------------------------------------------------
// antsRegistration / antsApplyTransforms option grammar. Every parser throws
// Error(InvalidArgument, <the option text>, <what is wrong>).
namespace ants {

/// "Name[a,b,c]" -> {"Name", {"a","b","c"}}; "[a,b]" -> {"", {"a","b"}}; "text" -> {"text", {}}.
/// Whitespace around items is trimmed; brackets must balance and close the string.
struct Call {
  std::string name;
  std::vector<std::string> args;
  bool bracketed = false;
};
Call parse_call(const std::string& text);

/// "100x70x50" -> {100, 70, 50}; also a single number.
std::vector<double> parse_x_list(const std::string& text);
std::vector<int> parse_int_x_list(const std::string& text);

/// "[100x70x50,1e-6,10]", "[100x70x50]" or "100x70x50" (threshold 1e-6, window 10 by default).
ConvergenceParams parse_convergence(const std::string& text);

/// "2x1x0vox" (voxels), "2x1x0mm" or "2x1x0" (mm, ANTs' default unit).
struct Sigmas {
  std::vector<double> values;
  bool in_mm = true;
};
Sigmas parse_smoothing_sigmas(const std::string& text);

/// "CC[fixed,moving,weight,radius(,sampling,percentage)]", "MI[f,m,w,bins,...]" (also
/// "Mattes"), "MeanSquares[f,m,w(,ignored)]".
struct MetricSpec {
  MetricParams params;
  std::string fixed, moving;
};
MetricSpec parse_metric(const std::string& text);

/// "Rigid[g]", "Affine[g]", "Translation[g]", "Greedy[g,sigmaGrad,sigmaWarp]",
/// "GaussianDisplacementField[g,varGrad,varWarp]", "SyN[g,varGrad,varWarp]".
/// ANTs' SyN and GaussianDisplacementField arguments are VARIANCES in voxels^2 and are converted
/// to sigmas (sqrt); Greedy (gigareg's own name) takes sigmas in voxels directly.
/// Greedy uses Adam (FieldOptimizer::Auto); SyN and GaussianDisplacementField use ANTs' plain
/// normalised gradient (FieldOptimizer::GradientDescent).
/// Sets transform, step, the sigmas and the optimizer of `stage`; other fields keep their values.
void parse_transform(const std::string& text, StageParams& stage);

/// "[fixed,moving,feature]" (feature 0: geometric centre, 1: centre of mass, 2: origins,
/// 3: moments) or "file" or "[file,useInverse]".
struct InitialSpec {
  InitialTransformType type = InitialTransformType::Identity;
  std::string fixed, moving, file;
  bool invert = false;
};
InitialSpec parse_initial_transform(const std::string& text);

/// "-o prefix" or "[prefix,warped(,inverseWarped)]".
struct OutputSpec {
  std::string prefix, warped, inverse_warped;
};
OutputSpec parse_output(const std::string& text);

/// "-x [fixedMask,movingMask]" or "fixedMask"; "NULL" or "none" for no mask.
struct MaskSpec {
  std::string fixed, moving;
};
MaskSpec parse_masks(const std::string& text);

/// antsApplyTransforms' "-t file" or "-t [file,1]".
struct TransformFileSpec {
  std::string file;
  bool invert = false;
};
TransformFileSpec parse_transform_file(const std::string& text);

/// "Linear", "NearestNeighbor", "GenericLabel" (also "MultiLabel" is refused with a hint).
Interpolation parse_interpolation(const std::string& text);

/// "cpu", "cuda", "auto".
DeviceChoice parse_device(const std::string& text);

/// Runs `parse()` on the value of a command-line option. The grammar's errors name the value
/// ("'[abc,1]': the list item 'abc' is not a number"); rethrown from here they name the option
/// first, so that a user of a long command line sees which option is wrong:
/// "--winsorize-image-intensities: '[abc,1]': ...".
template <class Parse>
auto for_option(const std::string& option, Parse&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::InvalidArgument || e.where().rfind(option, 0) == 0) throw;
    throw_error(e.kind(), option, e.where().empty() ? e.problem() : e.where() + ": " + e.problem());
  }
}

}  // namespace ants
}  // namespace gigareg
