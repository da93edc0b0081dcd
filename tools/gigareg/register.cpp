// gigareg register: antsRegistration's command line (and a short form with presets). The library
// parses the registration options (register_command.hpp) and does the work (register_files,
// which writes what antsRegistration writes); this file adds what only the tool does: the
// progress display and verbosity, the QC picture (prefixQC.png), the composite transforms
// (prefixComposite.h5) on request, the launch as one process or MPI ranks, and the summary.
#include <cstdarg>
#include <sys/resource.h>
#include <cstdio>
#include <cstdlib>
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
#include "gigareg/register_command.hpp"
#include "gigareg/registration.hpp"
#include "launch.hpp"
#include "progress.hpp"

namespace gigareg::cli {
namespace {

struct RegisterOptions {
  CLI::App* app = nullptr;  // its remaining arguments are the registration's (parse_register_command)
  int composite = 0;
  CLI::Option* verbose = nullptr;
  std::string progress = "auto";
  std::string qc;
  bool no_qc = false;
  RegisterHooks hooks;
};

// -v not given: the progress display and warnings; -v 0: nothing on stderr but errors;
// -v / -v 1: also the library's info messages; -v 2: one line per iteration and debug messages.
constexpr int kDefaultVerbosity = -1;

[[noreturn]] void usage_error(const std::string& option, const std::string& what) {
  throw_error(ErrorKind::InvalidArgument, option, what);
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

/// ITK's parameterisation of the result's affine: y = M (x - c) + t + c.
ItkAffine itk_affine(const RegistrationResult& r) {
  ItkAffine a;
  a.matrix = r.affine.matrix;
  a.center = r.center;
  a.translation = r.affine.offset - r.center + r.affine.matrix * r.center;
  return a;
}

/// Folds of the written warp: the voxels of the fixed grid where det(I + du/dx) <= 0.
struct FoldCount {
  double nonpositive = 0, voxels = 0;
};

/// Counts the warp's non-positive Jacobian determinants and warns when there are any: such a warp
/// is not invertible there (its inverse warp cannot be exact) and folds the moving image.
/// Collective under a partition (each process holds its planes of the warp); rank 0 warns.
FoldCount check_folds(RegistrationResult& r, const RegistrationOutputs& out, const Partition& part) {
  FoldCount f;
  if (r.warp.empty()) return f;
  f.voxels = double(r.warp.geometry().voxel_count());
  f.nonpositive = count_nonpositive_jacobian(r.warp, part);
  if (f.nonpositive > 0 && part.rank() == 0) {
    char text[768];
    std::snprintf(text, sizeof text,
                  "%s folds: non-positive Jacobian determinant at %.0f of %.0f voxels (fraction %.3g); "
                  "its inverse warp cannot be exact there. A smaller gradient step, more smoothing of "
                  "the update or of the total field (SyN[step,update variance,total variance]), or "
                  "fewer iterations at the finest level fold less; gigareg jacobian -i %s shows where.",
                  out.warp.c_str(), f.nonpositive, f.voxels, f.nonpositive / f.voxels, out.warp.c_str());
    log(LogLevel::Warning, text);
  }
  return f;
}

/// Appends printf-formatted text to `out`.
void append(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));
void append(std::string& out, const char* format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  out += line;
}

std::string summary(const RegistrationParams& p, const RegistrationResult& r, const FoldCount& folds,
                    const RegistrationOutputs& out, const std::vector<std::string>& extra) {
  std::string s;
  append(s, "gigareg register: %zu stage(s) on the %s backend, %.2f s\n", p.stages.size(),
         to_string(r.backend), r.seconds);
  for (const LevelReport& l : r.levels) {
    const StageParams& st = p.stages[std::size_t(l.stage)];
    append(s, "  stage %d %-11s %-11s level %d/%zu %4lldx%4lldx%4lld %5d it%s loss %.6g -> %.6g  %.2f s\n",
           l.stage + 1, to_string(st.transform), to_string(st.metric.type), l.level + 1,
           st.convergence.iterations.size(), (long long)l.size.x, (long long)l.size.y,
           (long long)l.size.z, l.iterations, l.converged ? " (converged)" : "            ",
           l.initial_loss, l.final_loss, l.seconds);
  }
  if (!r.warp.empty())
    append(s, "  warp: non-positive Jacobian determinant at %.0f voxels (fraction %.3g)\n", folds.nonpositive,
           folds.nonpositive / folds.voxels);
  if (!r.inverse_warp.empty())
    append(s, "  inverse warp: largest residual %.3g mm\n", r.inverse_residual_mm);
  s += "outputs:\n";
  for (const std::string* path : {&out.affine, &out.warp, &out.inverse_warp, &out.warped, &out.inverse_warped})
    if (!path->empty()) s += "  " + *path + "\n";
  for (const std::string& path : extra) s += "  " + path + "\n";
  return s;
}

/// With GIGAREG_REPORT_PEAK_MEMORY=1 (for tests and benchmarks), each process prints its peak
/// resident memory (getrusage's ru_maxrss) to stderr when its work is done: how the tests check
/// that no process of a distributed run holds whole outputs.
void report_peak_memory(const Partition& part) {
  const char* v = std::getenv("GIGAREG_REPORT_PEAK_MEMORY");
  if (v == nullptr || std::string(v) != "1") return;
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return;
  std::fprintf(stderr, "gigareg: peak resident memory of rank %d of %d: %ld kB\n", part.rank(),
               part.size(), long(usage.ru_maxrss));
}

// -v 2: one line per iteration on stderr.
void print_iteration(const IterationReport& r) {
  char conv[32] = "-";  // until the window is full
  if (r.convergence < 1e300) std::snprintf(conv, sizeof conv, "%.4g", r.convergence);
  std::fprintf(stderr, "  stage %d %s level %d/%d iteration %4d: loss %.8g  convergence %s\n",
               r.stage + 1, to_string(r.transform), r.level + 1, r.levels, r.iteration + 1, r.loss, conv);
}

// The library's messages shown at verbosity -v: 0 errors, 1 info, 2 debug, default warnings.
LogLevel log_level_of(int verbose) {
  return verbose == 0   ? LogLevel::Error
         : verbose == 2 ? LogLevel::Debug
         : verbose == 1 ? LogLevel::Info
                        : LogLevel::Warning;
}

int run_register(const RegisterOptions& o) {
  if (o.composite != 0 && o.composite != 1) usage_error("--write-composite-transform", "expected 0 or 1");
  if (o.no_qc && !o.qc.empty()) usage_error("--qc", "give either --qc PATH or --no-qc");
  if (!o.qc.empty() && std::filesystem::path(o.qc).extension() != ".png")
    usage_error("--qc " + o.qc, "the QC picture is a PNG: give a name ending in .png");
  RegisterCommand command = parse_register_command(o.app->remaining());
  RegistrationParams& p = command.params;
  RegistrationFiles& files = command.files;

  const int verbose = verbosity(o.verbose);
  const ProgressStyle style = progress_style(o.progress);
  files.qc_picture = o.no_qc ? "" : (!o.qc.empty() ? o.qc : files.output_prefix + "QC.png");

  // stderr: the progress display, and the library's messages printed through it so that they do
  // not break the bar. Declared before the sink guard: the sink refers to it.
  std::optional<ProgressDisplay> display;
  if (o.hooks.progress) {
    p.progress = o.hooks.progress;
  } else if (verbose == kDefaultVerbosity || verbose == 1) {
    display.emplace(p, style, stderr);
    p.progress = [&display](const IterationReport& r) { display->update(r); };
  } else if (verbose == 2) {
    p.progress = print_iteration;
  }
  set_log_level(log_level_of(verbose));
  LogSinkGuard sink(o.hooks.log ? o.hooks.log : [&display](LogLevel level, std::string_view msg) {
    const std::string text = (level >= LogLevel::Warning ? "gigareg: warning: " : "") + std::string(msg);
    if (display)
      display->message(text);
    else
      std::fprintf(stderr, "%s\n", text.c_str());
  });

  // One process, or one of the ranks of mpirun / srun (launch.hpp): the same options either way;
  // every rank writes its planes of the images, rank 0 the rest, shows progress and reports.
  return run_with_partition(p.device, [&](const Partition* partition) {
    const bool reporting = partition == nullptr || partition->rank() == 0;
    if (!reporting) {
      p.progress = nullptr;
      display.reset();
    }
    // Rank 0 commits every output as one set (the files that all ranks write together are
    // rank 0's temporaries): all appear at the end, or none (a QC picture that cannot be written
    // does not leave the transforms and warps of a failed command behind). The names are checked
    // first, before the work.
    std::optional<OutputSet> set;
    if (reporting) {
      if (o.composite == 1) {
        check_output_path(files.output_prefix + "Composite.h5", OutputKind::CompositeTransform);
        check_output_path(files.output_prefix + "InverseComposite.h5", OutputKind::CompositeTransform);
      }
      set.emplace();
    }
    RegistrationOutputs written;
    RegistrationResult r = register_files(p, files, &written, partition);
    if (display) display->finish();
    PhaseClock clock;  // -v 2: where the time after register_files goes
    // Under a partition every process holds its planes of the warp, inverse warp and warped
    // image (and wrote them); the composite transforms (one HDF5 file), only when asked for,
    // gather the fields on rank 0. register_files made the QC picture (from every process's
    // planes; in one process while the other outputs were written).
    const Partition& part = partition != nullptr ? *partition : single_process();
    const FoldCount folds = check_folds(r, written, part);
    clock.mark("fold count (Jacobian determinant)");
    auto gathered = [&](const Volume<float>& v) {
      if (v.empty() || part.size() == 1) return Volume<float>();
      Volume<float> all = part.fetch(v, part.rank() == 0 ? Box{{0, 0, 0}, v.geometry().size} : Box{});
      return all.empty() || all.space() == MemorySpace::Host ? std::move(all) : all.to(MemorySpace::Host);
    };
    Volume<float> whole_warp, whole_inverse;
    if (o.composite == 1) {
      whole_warp = gathered(r.warp);
      whole_inverse = gathered(r.inverse_warp);
    }
    if (!reporting) {
      report_peak_memory(part);
      return 0;
    }

    std::vector<std::string> extra;
    // register_files leaves the volumes in the backend's memory; these writers take host volumes.
    auto on_host = [](const Volume<float>& v, const Volume<float>& whole,
                      Volume<float>& copy) -> const Volume<float>& {
      if (!whole.empty()) return whole;
      if (v.empty() || v.space() == MemorySpace::Host) return v;
      copy = v.to(MemorySpace::Host);
      return copy;
    };
    Volume<float> warp_copy, inverse_copy;
    if (o.composite == 1) {
      const ItkAffine a = itk_affine(r);
      const std::string forward = files.output_prefix + "Composite.h5";
      write_composite_transform(forward, a, &on_host(r.warp, whole_warp, warp_copy));
      extra.push_back(forward);
      if (r.warp.empty() || !r.inverse_warp.empty()) {
        const std::string inverse = files.output_prefix + "InverseComposite.h5";
        write_inverse_composite_transform(inverse, a, &on_host(r.inverse_warp, whole_inverse, inverse_copy));
        extra.push_back(inverse);
      }
    }
    if (!written.qc_picture.empty()) extra.push_back(written.qc_picture);
    set->commit();
    clock.mark("outputs renamed");
    const std::string text = summary(p, r, folds, written, extra);
    if (o.hooks.summary)
      o.hooks.summary(text);
    else
      std::fputs(text.c_str(), stdout);
    report_peak_memory(part);
    return 0;
  });
}

}  // namespace

Command add_register_command(CLI::App& app, RegisterHooks hooks) {
  auto o = std::make_shared<RegisterOptions>();
  o->hooks = std::move(hooks);
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
  app.footer(app.get_footer() + "\n\nRegistration options (parsed by the library, register_command.hpp):\n" +
             register_command_help());
  // The registration options are not declared here: CLI11 passes them through, in order, to
  // parse_register_command.
  app.allow_extras();
  o->app = &app;
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
  app.add_option("--write-composite-transform", o->composite,
                 "1: also write PREFIXComposite.h5 (the affine and the warp as one ITK "
                 "CompositeTransform, fixed -> moving, for antsApplyTransforms -t) and "
                 "PREFIXInverseComposite.h5 (moving -> fixed); 0: do not")
      ->capture_default_str();
  return [o] { return run_register(*o); };
}

}  // namespace gigareg::cli
