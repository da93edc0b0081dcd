// gigareg register: antsRegistration's command line (and a short form with presets). The
// options are parsed into gigareg::RegistrationParams / RegistrationFiles; the library does the
// work (register_files) and writes what antsRegistration writes, then the QC picture
// (prefixQC.png) and, on request, the composite transforms (prefixComposite.h5).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "gigareg/composite_transform.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/qc.hpp"
#include "gigareg/registration.hpp"
#include "launch.hpp"
#include "progress.hpp"

namespace gigareg::cli {
namespace {

struct RegisterOptions {
  int dimensionality = 3;
  std::string output;
  std::string initial;
  std::vector<std::string> transforms, metrics, convergence, shrink, sigmas, masks;
  std::string preset, fixed, moving;
  std::string device = "auto";
  std::string interpolation = "Linear";
  int collapse = 1, composite = 0, histogram_matching = 0;
  std::string winsorize;
  int float_precision = 0;
  CLI::Option* verbose = nullptr;
  std::string progress = "auto";
  int inverse_iterations = 50;
  std::string field_optimizer;
  std::string adam_moments;
  std::string warp_extension = ".nii.gz";
  bool no_inverse_warp = false;
  std::string qc;
  bool no_qc = false;
};

// -v not given: the progress display and warnings; -v 0: nothing on stderr but errors;
// -v / -v 1: also the library's info messages; -v 2: one line per iteration and debug messages.
constexpr int kDefaultVerbosity = -1;

[[noreturn]] void usage_error(const std::string& option, const std::string& what) {
  throw_error(ErrorKind::InvalidArgument, option, what);
}

FieldOptimizer field_optimizer(const std::string& name) {
  if (name == "adam") return FieldOptimizer::Adam;
  if (name == "gd") return FieldOptimizer::GradientDescent;
  if (name == "auto") return FieldOptimizer::Auto;
  usage_error("--field-optimizer", "expected adam, gd or auto, got '" + name + "'");
}

bool bfloat16_moments(const std::string& name) {
  if (name == "bfloat16") return true;
  if (name == "float32") return false;
  usage_error("--adam-moments", "expected bfloat16 or float32, got '" + name + "'");
}

int verbosity(const CLI::Option* opt) {
  if (opt == nullptr || opt->count() == 0) return kDefaultVerbosity;
  const auto& r = opt->results();
  if (r.empty() || r.back().empty()) return 1;
  int v = -1;
  try {
    std::size_t used = 0;
    v = std::stoi(r.back(), &used);
    if (used != r.back().size()) v = -1;
  } catch (const std::exception&) {
    v = -1;
  }
  if (v < 0 || v > 2) usage_error("-v", "expected 0, 1 or 2, got '" + r.back() + "'");
  return v;
}

/// The progress display style of --progress (auto: a bar on a terminal, else log lines).
ProgressStyle progress_style(const std::string& name) {
  if (name == "auto") return detect_progress_style(stderr);
  if (name == "bar") return ProgressStyle::Bar;
  if (name == "lines") return ProgressStyle::Lines;
  usage_error("--progress", "expected auto, bar or lines, got '" + name + "'");
}

/// Restores the previous log sink when the command ends (before the display it refers to goes).
struct LogSinkGuard {
  explicit LogSinkGuard(LogSink sink) : previous(set_log_sink(std::move(sink))) {}
  ~LogSinkGuard() { set_log_sink(std::move(previous)); }
  LogSinkGuard(const LogSinkGuard&) = delete;
  LogSinkGuard& operator=(const LogSinkGuard&) = delete;
  LogSink previous;
};

void make_parent_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) throw_error(ErrorKind::Io, path, "cannot create its directory: " + ec.message());
}

/// ITK's parameterisation of the result's affine: y = M (x - c) + t + c.
ItkAffine itk_affine(const RegistrationResult& r) {
  ItkAffine a;
  a.matrix = r.affine.matrix;
  a.center = r.center;
  a.translation = r.affine.offset - r.center + r.affine.matrix * r.center;
  return a;
}

/// The stages of the ANTs form: each -t takes the -m, -c, -f, -s of the same position.
void build_stages(const RegisterOptions& o, RegistrationParams& p, RegistrationFiles& files) {
  const std::size_t n = o.transforms.size();
  auto count = [&](const std::vector<std::string>& v, const char* opt) {
    if (v.size() != n)
      usage_error(opt, "given " + std::to_string(v.size()) + " times for " + std::to_string(n) +
                           " stage(s) (-t): each stage takes one -m, -c, -f and -s, in order "
                           "(several metrics per stage are not supported)");
  };
  count(o.metrics, "-m/--metric");
  count(o.convergence, "-c/--convergence");
  count(o.shrink, "-f/--shrink-factors");
  count(o.sigmas, "-s/--smoothing-sigmas");
  for (std::size_t s = 0; s < n; ++s) {
    StageParams st;
    ants::parse_transform(o.transforms[s], st);
    const ants::MetricSpec m = ants::parse_metric(o.metrics[s]);
    st.metric = m.params;
    if (s == 0) {
      files.fixed = m.fixed;
      files.moving = m.moving;
    } else if (m.fixed != files.fixed || m.moving != files.moving) {
      usage_error("-m " + o.metrics[s],
                  "every stage must register the same pair (" + files.fixed + ", " + files.moving + ")");
    }
    st.convergence = ants::parse_convergence(o.convergence[s]);
    st.shrink_factors = ants::parse_x_list(o.shrink[s]);
    const ants::Sigmas sg = ants::parse_smoothing_sigmas(o.sigmas[s]);
    st.smoothing_sigmas = sg.values;
    st.sigmas_in_mm = sg.in_mm;
    const std::size_t levels = st.convergence.iterations.size();
    if (st.shrink_factors.size() != levels || st.smoothing_sigmas.size() != levels)
      usage_error("stage " + std::to_string(s + 1),
                  "-c has " + std::to_string(levels) + " levels, -f " +
                      std::to_string(st.shrink_factors.size()) + " and -s " +
                      std::to_string(st.smoothing_sigmas.size()) + ": they must agree");
    for (double f : st.shrink_factors)
      if (f < 1) usage_error("-f " + o.shrink[s], "shrink factors must be >= 1");
    if (!o.field_optimizer.empty()) st.optimizer = field_optimizer(o.field_optimizer);
    if (!o.adam_moments.empty()) st.adam_bfloat16_moments = bfloat16_moments(o.adam_moments);
    p.stages.push_back(st);
  }
}

void print_summary(const RegistrationParams& p, const RegistrationResult& r,
                   const RegistrationOutputs& out, const std::vector<std::string>& extra) {
  std::printf("gigareg register: %zu stage(s) on the %s backend, %.2f s\n", p.stages.size(),
              to_string(r.backend), r.seconds);
  for (const LevelReport& l : r.levels) {
    const StageParams& st = p.stages[std::size_t(l.stage)];
    std::printf("  stage %d %-11s %-11s level %d/%zu %4lldx%4lldx%4lld %5d it%s loss %.6g -> %.6g  %.2f s\n",
                l.stage + 1, to_string(st.transform), to_string(st.metric.type), l.level + 1,
                st.convergence.iterations.size(), (long long)l.size.x, (long long)l.size.y,
                (long long)l.size.z, l.iterations, l.converged ? " (converged)" : "            ",
                l.initial_loss, l.final_loss, l.seconds);
  }
  if (!r.inverse_warp.empty())
    std::printf("  inverse warp: largest residual %.3g mm\n", r.inverse_residual_mm);
  std::printf("outputs:\n");
  for (const std::string* s : {&out.affine, &out.warp, &out.inverse_warp, &out.warped, &out.inverse_warped})
    if (!s->empty()) std::printf("  %s\n", s->c_str());
  for (const std::string& s : extra) std::printf("  %s\n", s.c_str());
}

int run_register(const RegisterOptions& o) {
  if (o.dimensionality != 3) usage_error("-d", "only 3-D registration is supported");
  if (o.collapse != 1)
    usage_error("--collapse-output-transforms", "gigareg always collapses the output transforms (1)");
  if (o.composite != 0 && o.composite != 1) usage_error("--write-composite-transform", "expected 0 or 1");
  if (o.no_qc && !o.qc.empty()) usage_error("--qc", "give either --qc PATH or --no-qc");
  if (!o.qc.empty() && std::filesystem::path(o.qc).extension() != ".png")
    usage_error("--qc " + o.qc, "the QC picture is a PNG: give a name ending in .png");
  if (o.histogram_matching != 0 && o.histogram_matching != 1)
    usage_error("--use-histogram-matching", "expected 0 or 1");
  if (o.histogram_matching == 1)
    usage_error("--use-histogram-matching", "histogram matching is not supported (use 0)");
  if (!o.winsorize.empty()) {
    const ants::Call c = ants::parse_call(o.winsorize);
    if (!(c.args.size() == 2 && std::stod(c.args[0]) == 0.0 && std::stod(c.args[1]) == 1.0))
      usage_error("--winsorize-image-intensities", "winsorizing is not supported (only [0,1])");
  }
  if (ants::parse_interpolation(o.interpolation) != Interpolation::Linear)
    usage_error("--interpolation", "the warped output is resampled linearly (use gigareg apply for "
                                    "other interpolators)");
  if (o.output.empty()) usage_error("-o/--output", "an output prefix is required");

  RegistrationParams p;
  RegistrationFiles files;
  if (!o.preset.empty()) {
    if (!o.transforms.empty() || !o.convergence.empty() || !o.sigmas.empty())
      usage_error("--preset", "a preset replaces -t/-c/-s: give either a preset or the stages");
    p = registration_preset(o.preset);
    files.fixed = !o.fixed.empty() ? o.fixed : (o.shrink.size() == 1 ? o.shrink[0] : "");
    files.moving = !o.moving.empty() ? o.moving : (o.metrics.size() == 1 ? o.metrics[0] : "");
    if (o.shrink.size() > 1 || o.metrics.size() > 1 || (!o.fixed.empty() && !o.shrink.empty()) ||
        (!o.moving.empty() && !o.metrics.empty()))
      usage_error("--preset", "give one fixed image (-f/--fixed) and one moving image (-m/--moving)");
    if (files.fixed.empty() || files.moving.empty())
      usage_error("--preset", "the short form needs -f fixed.nii.gz -m moving.nii.gz");
  } else {
    if (o.transforms.empty())
      usage_error("-t/--transform", "no stage given: use -t/-m/-c/-f/-s per stage (antsRegistration) "
                                    "or --preset affine|greedy|syn with -f fixed -m moving");
    if (!o.fixed.empty() || !o.moving.empty())
      usage_error("--fixed/--moving", "the images come from -m Metric[fixed,moving,...] in the "
                                       "stage form; --fixed/--moving are for --preset");
    build_stages(o, p, files);
  }
  if (!o.preset.empty() && !o.field_optimizer.empty())
    for (StageParams& st : p.stages) st.optimizer = field_optimizer(o.field_optimizer);
  if (!o.preset.empty() && !o.adam_moments.empty())
    for (StageParams& st : p.stages) st.adam_bfloat16_moments = bfloat16_moments(o.adam_moments);
  p.device = ants::parse_device(o.device);
  p.inverse_iterations = o.inverse_iterations;
  p.compute_inverse = !o.no_inverse_warp;

  if (!o.initial.empty()) {
    const ants::InitialSpec init = ants::parse_initial_transform(o.initial);
    if (init.type == InitialTransformType::Given) {
      files.initial_transform = init.file;
      files.invert_initial_transform = init.invert;
    } else {
      p.initial.type = init.type;
    }
  } else if (o.preset.empty()) {
    p.initial.type = InitialTransformType::Identity;  // antsRegistration without -r
  }

  const ants::OutputSpec out = ants::parse_output(o.output);
  files.output_prefix = out.prefix;
  files.warped = out.warped;
  files.inverse_warped = out.inverse_warped;
  files.warp_extension = o.warp_extension;
  if (o.no_inverse_warp && !files.inverse_warped.empty())
    usage_error("--no-inverse-warp", "the inverse warped image (the third -o entry) needs the inverse warp");
  if (o.preset.size() && files.warped.empty()) files.warped = out.prefix + "Warped.nii.gz";

  if (!o.masks.empty()) {
    if (o.masks.size() != 1 && o.masks.size() != p.stages.size())
      usage_error("-x/--masks", "give it once, or once per stage");
    const ants::MaskSpec m0 = ants::parse_masks(o.masks[0]);
    for (const std::string& x : o.masks) {
      const ants::MaskSpec m = ants::parse_masks(x);
      if (m.fixed != m0.fixed || m.moving != m0.moving)
        usage_error("-x " + x, "gigareg uses one mask pair for all stages");
    }
    files.fixed_mask = m0.fixed;
    files.moving_mask = m0.moving;
  }

  const int verbose = verbosity(o.verbose);
  const ProgressStyle style = progress_style(o.progress);
  p.validate();
  const std::string qc_path = o.no_qc ? "" : (!o.qc.empty() ? o.qc : out.prefix + "QC.png");

  // stderr: the progress display, and the library's messages printed through it so that they do
  // not break the bar. Declared before the sink guard: the sink refers to it.
  std::optional<ProgressDisplay> display;
  if (verbose == kDefaultVerbosity || verbose == 1) {
    display.emplace(p, style, stderr);
    p.progress = [&display](const IterationReport& r) { display->update(r); };
  } else if (verbose == 2) {
    p.progress = [](const IterationReport& r) {
      char conv[32] = "-";  // until the window is full
      if (r.convergence < 1e300) std::snprintf(conv, sizeof conv, "%.4g", r.convergence);
      std::fprintf(stderr, "  stage %d %s level %d/%d iteration %4d: loss %.8g  convergence %s\n",
                   r.stage + 1, to_string(r.transform), r.level + 1, r.levels, r.iteration + 1,
                   r.loss, conv);
    };
  }
  set_log_level(verbose == 0   ? LogLevel::Error
                : verbose == 2 ? LogLevel::Debug
                : verbose == 1 ? LogLevel::Info
                               : LogLevel::Warning);
  LogSinkGuard sink([&display](LogLevel level, std::string_view msg) {
    const std::string text = (level >= LogLevel::Warning ? "gigareg: warning: " : "") + std::string(msg);
    if (display)
      display->message(text);
    else
      std::fprintf(stderr, "%s\n", text.c_str());
  });

  // One process, or one of the ranks of mpirun / srun (launch.hpp): the same options either way;
  // rank 0 writes the outputs, shows progress and reports.
  return run_with_partition(p.device, [&](const Partition* partition) {
    const bool reporting = partition == nullptr || partition->rank() == 0;
    if (!reporting) {
      p.progress = nullptr;
      display.reset();
    }
    // Rank 0 writes every output as one set: all appear at the end, or none (a QC picture that
    // cannot be written does not leave the transforms and warps of a failed command behind). The
    // names are checked first, before the work.
    std::optional<OutputSet> set;
    if (reporting) {
      if (!qc_path.empty()) check_output_path(qc_path, OutputKind::Png);
      if (o.composite == 1) {
        check_output_path(out.prefix + "Composite.h5", OutputKind::CompositeTransform);
        check_output_path(out.prefix + "InverseComposite.h5", OutputKind::CompositeTransform);
      }
      set.emplace();
    }
    RegistrationOutputs written;
    const RegistrationResult r = register_files(p, files, &written, partition);
    if (display) display->finish();
    if (!reporting) return 0;

    std::vector<std::string> extra;
    if (o.composite == 1) {
      const ItkAffine a = itk_affine(r);
      const std::string forward = out.prefix + "Composite.h5";
      write_composite_transform(forward, a, &r.warp);
      extra.push_back(forward);
      if (r.warp.empty() || !r.inverse_warp.empty()) {
        const std::string inverse = out.prefix + "InverseComposite.h5";
        write_inverse_composite_transform(inverse, a, &r.inverse_warp);
        extra.push_back(inverse);
      }
    }
    if (!qc_path.empty() && r.warped.empty()) {
      log(LogLevel::Warning, "no warped image: the QC picture is not written");
    } else if (!qc_path.empty()) {
      // The fixed image again (register_files keeps no copy); the warped image is on its grid.
      const Image fixed = read_image(files.fixed);
      make_parent_directory(qc_path);
      write_qc_picture(qc_path, fixed.voxels, r.warped);
      extra.push_back(qc_path);
    }
    set->commit();
    print_summary(p, r, written, extra);
    return 0;
  });
}

}  // namespace

Command add_register_command(CLI::App& app) {
  auto o = std::make_shared<RegisterOptions>();
  app.footer(
      "ANTs form (stages repeat in order; each -t takes the -m, -c, -f, -s at the same position):\n"
      "  gigareg register -d 3 -o [out/reg_,out/warped.nii.gz] -r [fixed.nii.gz,moving.nii.gz,1] \\\n"
      "    -t Rigid[0.1]  -m MI[fixed.nii.gz,moving.nii.gz,1,32] -c [200x100x50,1e-6,10] -f 4x2x1 -s 2x1x0vox \\\n"
      "    -t Affine[0.1] -m MI[fixed.nii.gz,moving.nii.gz,1,32] -c [200x100x50,1e-6,10] -f 4x2x1 -s 2x1x0vox \\\n"
      "    -t SyN[0.1,3,0] -m CC[fixed.nii.gz,moving.nii.gz,1,2] -c [100x70x40,1e-6,10] -f 4x2x1 -s 2x1x0vox\n"
      "Short form:\n"
      "  gigareg register -f fixed.nii.gz -m moving.nii.gz -o out/ --preset affine|greedy|syn\n"
      "Outputs as antsRegistration: PREFIX0GenericAffine.mat, PREFIX1Warp.nii.gz and\n"
      "PREFIX1InverseWarp.nii.gz (deformable stages), PREFIXComposite.h5 and\n"
      "PREFIXInverseComposite.h5 with --write-composite-transform 1, and the QC picture\n"
      "PREFIXQC.png (fixed, warped and their checkerboard in three planes); apply them with\n"
      "  gigareg apply -i moving.nii.gz -r fixed.nii.gz -o out.nii.gz -t PREFIX1Warp.nii.gz -t PREFIX0GenericAffine.mat");
  app.add_option("-d,--dimensionality", o->dimensionality, "image dimension (3)")->capture_default_str();
  app.add_option("-o,--output", o->output,
                 "PREFIX or [PREFIX,warped.nii.gz(,inverseWarped.nii.gz)]; a PREFIX ending in '/' "
                 "writes into that directory")
      ->required()
      ->allow_extra_args(false);
  app.add_option("-r,--initial-moving-transform", o->initial,
                 "an affine file, [file,useInverse], or [fixed,moving,feature] with feature 0 "
                 "(image centres), 1 (centres of mass), 2 (origins), 3 (moments: centres of mass "
                 "and principal axes, a proper rotation)")
      ->allow_extra_args(false);
  app.add_option("-t,--transform", o->transforms,
                 "a stage: Translation[g], Rigid[g], Affine[g], Greedy[g,sigmaGrad,sigmaWarp] "
                 "(sigmas in voxels), GaussianDisplacementField[g,varGrad,varWarp] or "
                 "SyN[g,varGrad,varWarp] (ANTs' variances in voxels^2). g: the step, in voxels "
                 "of the level")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-m,--metric", o->metrics,
                 "per stage: CC[fixed,moving,weight,radius], MI[fixed,moving,weight,bins] or "
                 "MeanSquares[fixed,moving,weight]; with --preset: the moving image")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-c,--convergence", o->convergence,
                 "per stage: [iterations per level,threshold,window], e.g. [100x70x50,1e-6,10]: "
                 "a level stops when the slope of the last `window` normalised loss values is "
                 "below threshold")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-f,--shrink-factors", o->shrink,
                 "per stage: shrink factors per level, e.g. 4x2x1; with --preset: the fixed image")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-s,--smoothing-sigmas", o->sigmas,
                 "per stage: Gaussian sigmas per level, e.g. 2x1x0vox (voxels) or 2x1x0mm / 2x1x0 (mm)")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-x,--masks", o->masks, "[fixedMask,movingMask] or fixedMask (NULL for none); once, or once per stage")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("--preset", o->preset, "short form: rigid, affine, greedy or syn (with -f/--fixed and -m/--moving)");
  app.add_option("--fixed", o->fixed, "short form: the fixed image");
  app.add_option("--moving", o->moving, "short form: the moving image");
  app.add_option("--device", o->device, "cpu, cuda or auto (cuda when a GPU is available)")
      ->capture_default_str();
  o->verbose = app.add_option("-v,--verbose",
                              "stderr: 0 nothing but errors; not given: a progress bar per level "
                              "(iteration, loss, time left) and warnings; 1 (or -v alone): also "
                              "the library's messages; 2: one line per iteration and debug messages")
                   ->expected(0, 1);
  app.add_option("--progress", o->progress,
                 "how progress is shown: bar (redrawn in place), lines (a line per level, and "
                 "per 10% of a long level: for logs) or auto (bar when stderr is a terminal)")
      ->capture_default_str();
  app.add_option("--qc", o->qc, "the QC picture (PNG; default PREFIXQC.png): fixed, warped moving and "
                                "their checkerboard through the centre of the fixed image, in "
                                "axial, coronal and sagittal planes");
  app.add_flag("--no-qc", o->no_qc, "do not write the QC picture");
  app.add_option("-n,--interpolation", o->interpolation, "interpolation of the warped output (Linear)")
      ->capture_default_str();
  app.add_option("--float", o->float_precision, "accepted for ANTs compatibility (gigareg computes in float32)");
  app.add_option("--collapse-output-transforms", o->collapse, "accepted for ANTs compatibility (1)");
  app.add_option("--write-composite-transform", o->composite,
                 "1: also write PREFIXComposite.h5 (the affine and the warp as one ITK "
                 "CompositeTransform, fixed -> moving, for antsApplyTransforms -t) and "
                 "PREFIXInverseComposite.h5 (moving -> fixed); 0: do not")
      ->capture_default_str();
  app.add_option("--use-histogram-matching", o->histogram_matching, "accepted for ANTs compatibility (0)");
  app.add_option("--winsorize-image-intensities", o->winsorize, "accepted for ANTs compatibility ([0,1])")
      ->allow_extra_args(false);
  app.add_option("--field-optimizer", o->field_optimizer,
                 "deformable stages: adam (FireANTs), gd (ANTs: the normalised smoothed gradient) or "
                 "auto (adam for Greedy, gd for SyN and GaussianDisplacementField)");
  app.add_option("--adam-moments", o->adam_moments,
                 "storage of Adam's moments in deformable stages: bfloat16 (default; half the "
                 "memory, float arithmetic) or float32");
  app.add_option("--warp-extension", o->warp_extension,
                 ".nii.gz (as ANTs) or .nii for prefix1Warp and prefix1InverseWarp (uncompressed: "
                 "written at disk speed, for gigavoxel fields)")
      ->capture_default_str()
      ->check(CLI::IsMember({".nii.gz", ".nii"}));
  app.add_flag("--no-inverse-warp", o->no_inverse_warp,
               "do not compute or write prefix1InverseWarp (nor the inverse warped image)");
  app.add_option("--inverse-iterations", o->inverse_iterations,
                 "fixed-point iterations of the inverse warp")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  return [o] { return run_register(*o); };
}

}  // namespace gigareg::cli
