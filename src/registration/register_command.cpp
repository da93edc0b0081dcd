// `gigareg register`'s command line: arguments -> RegistrationParams + RegistrationFiles, and back.
// The option table below is the one list of the options: the parser, the help text and the
// printer all follow it.

#include "gigareg/register_command.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"

namespace gigareg {
namespace {

enum class Takes { Flag, Value, Values };  // no value; one value; one value each time, repeatable

struct OptionSpec {
  const char* names;  // "-t,--transform": the short name (if any), then the long one
  Takes takes;
  const char* help;
};

const OptionSpec kOptions[] = {
    // One row per option (long rows: the help text reads as one sentence).
    {"-d,--dimensionality", Takes::Value, "image dimension: 3 (the only one supported)"},
    {"-o,--output", Takes::Value, "PREFIX or [PREFIX,warped.nii.gz(,inverseWarped.nii.gz)]; a PREFIX ending in '/' writes into that directory (required)"},
    {"-r,--initial-moving-transform", Takes::Value, "an affine file, [file,useInverse], or [fixed,moving,feature] with feature 0 (image centres), 1 (centres of mass), 2 (origins), 3 (moments: centres of mass and principal axes, a proper rotation); stage form without -r: the identity"},
    {"-t,--transform", Takes::Values, "a stage: Translation[g], Rigid[g], Affine[g], Greedy[g,sigmaGrad,sigmaWarp] (sigmas in voxels), GaussianDisplacementField[g,varGrad,varWarp] or SyN[g,varGrad,varWarp] (ANTs' variances in voxels^2). g: the step, in voxels of the level"},
    {"-m,--metric", Takes::Values, "per stage: CC[fixed,moving,weight,radius], MI[fixed,moving,weight,bins] or MeanSquares[fixed,moving,weight]; with --preset: the moving image"},
    {"-c,--convergence", Takes::Values, "per stage: [iterations per level,threshold,window], e.g. [100x70x50,1e-6,10]: a level stops when the slope of the last `window` normalised loss values is below threshold"},
    {"-f,--shrink-factors", Takes::Values, "per stage: shrink factors per level, e.g. 4x2x1; with --preset: the fixed image"},
    {"-s,--smoothing-sigmas", Takes::Values, "per stage: Gaussian sigmas per level, e.g. 2x1x0vox (voxels) or 2x1x0mm / 2x1x0 (mm)"},
    {"-x,--masks", Takes::Values, "[fixedMask,movingMask] or fixedMask (NULL for none); once, or once per stage (the same pair)"},
    {"--preset", Takes::Value, "short form: rigid, affine, greedy or syn (with -f/--fixed and -m/--moving); the initial transform is then the centres of mass unless -r is given"},
    {"--fixed", Takes::Value, "short form: the fixed image"},
    {"--moving", Takes::Value, "short form: the moving image"},
    {"--device", Takes::Value, "cpu, cuda or auto (cuda when a GPU is available; default auto)"},
    {"-n,--interpolation", Takes::Value, "interpolation of the warped output: Linear (use gigareg apply for the others)"},
    {"--float", Takes::Value, "accepted for ANTs compatibility (gigareg computes in float32)"},
    {"--collapse-output-transforms", Takes::Value, "accepted for ANTs compatibility: 1"},
    {"--use-histogram-matching", Takes::Value, "accepted for ANTs compatibility: 0"},
    {"--winsorize-image-intensities", Takes::Value, "accepted for ANTs compatibility: [0,1]"},
    {"--field-optimizer", Takes::Value, "deformable stages: adam (FireANTs), gd (ANTs: the normalised smoothed gradient) or auto (adam for Greedy, gd for SyN and GaussianDisplacementField)"},
    {"--adam-moments", Takes::Value, "deformable stages, storage of Adam's moments: bfloat16 (default; half the memory, float arithmetic) or float32"},
    {"--warp-extension", Takes::Value, ".nii.gz (as ANTs; default), .nii (uncompressed: written at disk speed, for gigavoxel fields) or .zarr (OME-Zarr, chunked and compressed on all cores: docs/zarr.md) for prefix1Warp and prefix1InverseWarp"},
    {"--no-inverse-warp", Takes::Flag, "do not compute or write prefix1InverseWarp (nor the inverse warped image)"},
    {"--inverse-iterations", Takes::Value, "fixed-point iterations of the inverse warp, 0..1000 (default 50)"},
};

std::string long_name(const OptionSpec& o) {
  const std::string n = o.names;
  const std::size_t comma = n.find(',');
  return comma == std::string::npos ? n : n.substr(comma + 1);
}

const OptionSpec* find_option(const std::string& word) {
  for (const OptionSpec& o : kOptions) {
    const std::string n = o.names;
    const std::size_t comma = n.find(',');
    if (word == long_name(o) || (comma != std::string::npos && word == n.substr(0, comma))) return &o;
  }
  return nullptr;
}

[[noreturn]] void usage_error(const std::string& option, const std::string& what) {
  throw_error(ErrorKind::InvalidArgument, option, what);
}

/// "-t/--transform": how errors name an option.
std::string display_name(const OptionSpec& o) {
  std::string n = o.names;
  const std::size_t comma = n.find(',');
  if (comma != std::string::npos) n[comma] = '/';
  return n;
}

/// The values given per option (by long name), in order; a flag has one empty value per use.
class Given {
 public:
  explicit Given(const std::vector<std::string>& args) {
    for (std::size_t i = 0; i < args.size(); ++i) {
      std::string word = args[i], value;
      bool has_value = false;
      const std::size_t eq = word.find('=');
      if (word.size() > 1 && word[0] == '-' && eq != std::string::npos) {
        value = word.substr(eq + 1);
        word = word.substr(0, eq);
        has_value = true;
      }
      const OptionSpec* o = word.size() > 1 && word[0] == '-' ? find_option(word) : nullptr;
      if (o == nullptr) {
        if (word.size() > 1 && word[0] == '-') usage_error(word, "unknown option of gigareg register");
        usage_error("'" + word + "'", "unexpected argument: every value follows its option");
      }
      const std::string name = long_name(*o);
      if (o->takes == Takes::Flag) {
        if (has_value) usage_error(display_name(*o), "takes no value");
      } else if (!has_value) {
        if (i + 1 == args.size()) usage_error(display_name(*o), "needs a value");
        value = args[++i];
      }
      std::vector<std::string>& v = values_[name];
      if (o->takes == Takes::Value && !v.empty()) usage_error(display_name(*o), "given more than once");
      v.push_back(value);
    }
  }

  const std::vector<std::string>& all(const char* name) const {
    static const std::vector<std::string> none;
    const auto it = values_.find(name);
    return it == values_.end() ? none : it->second;
  }
  bool has(const char* name) const { return !all(name).empty(); }
  std::string one(const char* name, const std::string& fallback = "") const {
    return has(name) ? all(name).front() : fallback;
  }
  int integer(const char* name, int fallback) const {
    if (!has(name)) return fallback;
    const std::string& text = all(name).front();
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < -1000000 || v > 1000000)
      usage_error(display_name(*find_option(name)), "expected an integer, got '" + text + "'");
    return int(v);
  }

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

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

/// Options that gigareg accepts for ANTs compatibility only with the value that is its behaviour.
void check_ants_compatibility(const Given& g) {
  if (g.integer("--dimensionality", 3) != 3) usage_error("-d/--dimensionality", "only 3-D registration is supported");
  if (g.integer("--collapse-output-transforms", 1) != 1)
    usage_error("--collapse-output-transforms", "gigareg always collapses the output transforms (1)");
  const int histogram_matching = g.integer("--use-histogram-matching", 0);
  if (histogram_matching != 0 && histogram_matching != 1)
    usage_error("--use-histogram-matching", "expected 0 or 1");
  if (histogram_matching == 1)
    usage_error("--use-histogram-matching", "histogram matching is not supported (use 0)");
  if (g.has("--winsorize-image-intensities")) {
    const std::string text = g.one("--winsorize-image-intensities");
    const bool identity = ants::for_option("--winsorize-image-intensities", [&] {
      const ants::Call c = ants::parse_call(text);
      return c.name.empty() && c.args.size() == 2 &&
             ants::parse_x_list(c.args[0]) == std::vector<double>{0.0} &&
             ants::parse_x_list(c.args[1]) == std::vector<double>{1.0};
    });
    if (!identity)
      usage_error("--winsorize-image-intensities",
                  "'" + text + "': winsorizing is not supported (only [0,1])");
  }
  g.integer("--float", 0);  // any integer: the computation is float32 either way
  if (ants::for_option("-n/--interpolation",
                       [&] { return ants::parse_interpolation(g.one("--interpolation", "Linear")); }) !=
      Interpolation::Linear)
    usage_error("-n/--interpolation", "the warped output is resampled linearly (use gigareg apply for "
                                    "other interpolators)");
}

/// The stages of the ANTs form: each -t takes the -m, -c, -f, -s of the same position.
void build_stages(const Given& g, RegisterCommand& c) {
  const std::vector<std::string>& transforms = g.all("--transform");
  const std::size_t n = transforms.size();
  auto per_stage = [&](const char* name, const char* names) -> const std::vector<std::string>& {
    const std::vector<std::string>& v = g.all(name);
    if (v.size() != n)
      usage_error(names, "given " + std::to_string(v.size()) + " times for " + std::to_string(n) +
                             " stage(s) (-t): each stage takes one -m, -c, -f and -s, in order "
                             "(several metrics per stage are not supported)");
    return v;
  };
  const auto& metrics = per_stage("--metric", "-m/--metric");
  const auto& convergence = per_stage("--convergence", "-c/--convergence");
  const auto& shrink = per_stage("--shrink-factors", "-f/--shrink-factors");
  const auto& sigmas = per_stage("--smoothing-sigmas", "-s/--smoothing-sigmas");
  for (std::size_t s = 0; s < n; ++s) {
    StageParams st;
    ants::for_option("-t/--transform", [&] { ants::parse_transform(transforms[s], st); });
    const ants::MetricSpec m = ants::for_option("-m/--metric", [&] { return ants::parse_metric(metrics[s]); });
    st.metric = m.params;
    if (s == 0) {
      c.files.fixed = m.fixed;
      c.files.moving = m.moving;
    } else if (m.fixed != c.files.fixed || m.moving != c.files.moving) {
      usage_error("-m " + metrics[s], "every stage must register the same pair (" + c.files.fixed +
                                          ", " + c.files.moving + ")");
    }
    st.convergence = ants::for_option("-c/--convergence", [&] { return ants::parse_convergence(convergence[s]); });
    st.shrink_factors = ants::for_option("-f/--shrink-factors", [&] { return ants::parse_x_list(shrink[s]); });
    const ants::Sigmas sg =
        ants::for_option("-s/--smoothing-sigmas", [&] { return ants::parse_smoothing_sigmas(sigmas[s]); });
    st.smoothing_sigmas = sg.values;
    st.sigmas_in_mm = sg.in_mm;
    const std::size_t levels = st.convergence.iterations.size();
    if (st.shrink_factors.size() != levels || st.smoothing_sigmas.size() != levels)
      usage_error("stage " + std::to_string(s + 1),
                  "-c has " + std::to_string(levels) + " levels, -f " +
                      std::to_string(st.shrink_factors.size()) + " and -s " +
                      std::to_string(st.smoothing_sigmas.size()) + ": they must agree");
    for (double f : st.shrink_factors)
      if (f < 1) usage_error("-f " + shrink[s], "shrink factors must be >= 1");
    c.params.stages.push_back(st);
  }
}

/// The short form: a preset's stages, the images from --fixed/--moving (or -f/-m, which name the
/// images there since a preset has no per-stage options).
void build_preset(const Given& g, RegisterCommand& c) {
  if (g.has("--transform") || g.has("--convergence") || g.has("--smoothing-sigmas"))
    usage_error("--preset", "a preset replaces -t/-c/-s: give either a preset or the stages");
  c.params = ants::for_option("--preset", [&] { return registration_preset(g.one("--preset")); });
  const std::vector<std::string>& f = g.all("--shrink-factors");
  const std::vector<std::string>& m = g.all("--metric");
  if (f.size() > 1 || m.size() > 1 || (g.has("--fixed") && !f.empty()) || (g.has("--moving") && !m.empty()))
    usage_error("--preset", "give one fixed image (-f/--fixed) and one moving image (-m/--moving)");
  c.files.fixed = g.one("--fixed", f.empty() ? "" : f[0]);
  c.files.moving = g.one("--moving", m.empty() ? "" : m[0]);
  if (c.files.fixed.empty() || c.files.moving.empty())
    usage_error("--preset", "the short form needs -f fixed.nii.gz -m moving.nii.gz");
}

void set_initial_transform(const Given& g, RegisterCommand& c) {
  if (!g.has("--initial-moving-transform")) {
    // antsRegistration without -r starts from the identity; a preset keeps its own start.
    if (!g.has("--preset")) c.params.initial.type = InitialTransformType::Identity;
    return;
  }
  const std::string text = g.one("--initial-moving-transform");
  const ants::InitialSpec init =
      ants::for_option("-r/--initial-moving-transform", [&] { return ants::parse_initial_transform(text); });
  if (init.type == InitialTransformType::Given) {
    c.files.initial_transform = init.file;
    c.files.invert_initial_transform = init.invert;
  } else {
    // antsRegistration initialises from the images named here; gigareg from the registered pair.
    // Other names would be ignored silently, so they must be that pair (as written, up to "./").
    auto same = [](const std::string& a, const std::string& b) {
      return std::filesystem::path(a).lexically_normal() == std::filesystem::path(b).lexically_normal();
    };
    if (!same(init.fixed, c.files.fixed) || !same(init.moving, c.files.moving))
      usage_error("-r/--initial-moving-transform",
                  "'" + text + "' names the images " + init.fixed + ", " + init.moving +
                      " but the registered pair is " + c.files.fixed + ", " + c.files.moving +
                      " (the initialisation is computed from the registered pair)");
    c.params.initial.type = init.type;
  }
}

void set_outputs(const Given& g, RegisterCommand& c) {
  const ants::OutputSpec out = ants::for_option("-o/--output", [&] { return ants::parse_output(g.one("--output")); });
  c.files.output_prefix = out.prefix;
  c.files.warped = out.warped;
  c.files.inverse_warped = out.inverse_warped;
  if (g.has("--preset") && c.files.warped.empty()) c.files.warped = out.prefix + "Warped.nii.gz";
  c.files.warp_extension = g.one("--warp-extension", ".nii.gz");
  if (c.files.warp_extension != ".nii.gz" && c.files.warp_extension != ".nii" &&
      c.files.warp_extension != ".zarr")
    usage_error("--warp-extension",
                "expected .nii.gz, .nii or .zarr, got '" + c.files.warp_extension + "'");
  if (g.has("--no-inverse-warp") && !c.files.inverse_warped.empty())
    usage_error("--no-inverse-warp", "the inverse warped image (the third -o entry) needs the inverse warp");

  const std::vector<std::string>& masks = g.all("--masks");
  if (masks.empty()) return;
  if (masks.size() != 1 && masks.size() != c.params.stages.size())
    usage_error("-x/--masks", "give it once, or once per stage");
  auto parse_masks = [](const std::string& x) {
    return ants::for_option("-x/--masks", [&] { return ants::parse_masks(x); });
  };
  const ants::MaskSpec m0 = parse_masks(masks[0]);
  for (const std::string& x : masks) {
    const ants::MaskSpec m = parse_masks(x);
    if (m.fixed != m0.fixed || m.moving != m0.moving)
      usage_error("-x " + x, "gigareg uses one mask pair for all stages");
  }
  c.files.fixed_mask = m0.fixed;
  c.files.moving_mask = m0.moving;
}

// --- printing --------------------------------------------------------------------------------

/// The shortest decimal that reads back as exactly `v` (so that printing loses nothing).
std::string number(double v) {
  char buf[40];
  if (v == std::floor(v) && std::abs(v) < 1e15) {  // whole numbers as written: 200, not 2e+02
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

template <class T>
std::string x_list(const std::vector<T>& values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i) s += (i ? "x" : "") + number(double(values[i]));
  return s;
}

/// A word as a POSIX shell reads it: bare when it holds only characters the shell takes
/// literally, else in single quotes. Brackets are quoted too: bare, "[a,b]" is a glob pattern that
/// a one-letter file name in the working directory would replace.
std::string shell_word(const std::string& w) {
  bool plain = !w.empty();
  for (char ch : w)
    plain = plain && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      std::string(",._-+/:=@%").find(ch) != std::string::npos);
  if (plain) return w;
  std::string q = "'";
  for (char ch : w) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

/// The optimiser that parse_transform sets for a deformable stage written as its transform name.
FieldOptimizer default_optimizer(TransformType t) {
  return t == TransformType::SyN ? FieldOptimizer::GradientDescent : FieldOptimizer::Auto;
}

const char* optimizer_name(FieldOptimizer o) {
  switch (o) {
    case FieldOptimizer::Adam: return "adam";
    case FieldOptimizer::GradientDescent: return "gd";
    case FieldOptimizer::Auto: return "auto";
  }
  return "?";
}

std::string transform_word(const StageParams& st) {
  switch (st.transform) {
    case TransformType::Translation:
    case TransformType::Rigid:
    case TransformType::Affine:
      return std::string(to_string(st.transform)) + "[" + number(st.step) + "]";
    case TransformType::Greedy:  // gigareg's Greedy takes sigmas
      return "Greedy[" + number(st.step) + "," + number(st.gradient_sigma) + "," +
             number(st.field_sigma) + "]";
    case TransformType::SyN:  // ANTs' SyN takes variances (sqrt(s * s) == s in IEEE arithmetic)
      return "SyN[" + number(st.step) + "," + number(st.gradient_sigma * st.gradient_sigma) + "," +
             number(st.field_sigma * st.field_sigma) + "]";
  }
  return "?";
}

std::string metric_word(const MetricParams& m, const RegistrationFiles& files) {
  const std::string images = files.fixed + "," + files.moving + "," + number(m.weight);
  switch (m.type) {
    case MetricType::CC: return "CC[" + images + "," + std::to_string(m.radius) + "]";
    case MetricType::MI: return "MI[" + images + "," + std::to_string(m.bins) + "]";
    case MetricType::MeanSquares: return "MeanSquares[" + images + "]";
  }
  return "?";
}

std::string null_or(const std::string& s) { return s.empty() ? "NULL" : s; }

}  // namespace

RegisterCommand parse_register_command(const std::vector<std::string>& args) {
  const Given g(args);
  check_ants_compatibility(g);
  if (!g.has("--output")) usage_error("-o/--output", "an output prefix is required");
  RegisterCommand c;
  if (g.has("--preset")) {
    build_preset(g, c);
  } else {
    if (!g.has("--transform"))
      usage_error("-t/--transform", "no stage given: use -t/-m/-c/-f/-s per stage (antsRegistration) "
                                    "or --preset affine|greedy|syn with -f fixed -m moving");
    if (g.has("--fixed") || g.has("--moving"))
      usage_error("--fixed/--moving", "the images come from -m Metric[fixed,moving,...] in the "
                                       "stage form; --fixed/--moving are for --preset");
    build_stages(g, c);
  }
  // Both apply to the deformable stages only: linear stages have no field optimiser.
  for (StageParams& st : c.params.stages) {
    if (is_linear(st.transform)) continue;
    if (g.has("--field-optimizer")) st.optimizer = field_optimizer(g.one("--field-optimizer"));
    if (g.has("--adam-moments")) st.adam_bfloat16_moments = bfloat16_moments(g.one("--adam-moments"));
  }
  c.params.device = ants::for_option("--device", [&] { return ants::parse_device(g.one("--device", "auto")); });
  c.params.inverse_iterations = g.integer("--inverse-iterations", 50);
  if (c.params.inverse_iterations < 0 || c.params.inverse_iterations > 1000)
    usage_error("--inverse-iterations", "expected 0..1000, got " + g.one("--inverse-iterations"));
  c.params.compute_inverse = !g.has("--no-inverse-warp");
  set_initial_transform(g, c);
  set_outputs(g, c);
  c.params.validate();
  return c;
}

RegisterCommand parse_register_command(const std::string& line) {
  std::vector<std::string> words = split_command_line(line);
  if (words.size() >= 2 && words[0] == "gigareg" && words[1] == "register")
    words.erase(words.begin(), words.begin() + 2);
  return parse_register_command(words);
}

std::string format_register_command(const RegistrationParams& p, const RegistrationFiles& files) {
  std::vector<std::string> w = {"gigareg", "register", "-d", "3"};
  auto add = [&w](const char* option, const std::string& value) {
    w.push_back(option);
    w.push_back(value);
  };
  std::string output = files.output_prefix;
  if (!files.warped.empty() || !files.inverse_warped.empty())
    output = "[" + output + "," + files.warped +
             (files.inverse_warped.empty() ? "" : "," + files.inverse_warped) + "]";
  add("-o", output);
  if (!files.initial_transform.empty()) {
    add("-r", files.invert_initial_transform ? "[" + files.initial_transform + ",1]" : files.initial_transform);
  } else if (p.initial.type != InitialTransformType::Identity && p.initial.type != InitialTransformType::Given) {
    // The feature numbers of ants::parse_initial_transform.
    const int feature = p.initial.type == InitialTransformType::GeometricCenter ? 0
                        : p.initial.type == InitialTransformType::CenterOfMass  ? 1
                        : p.initial.type == InitialTransformType::Origins       ? 2
                                                                                : 3;
    add("-r", "[" + files.fixed + "," + files.moving + "," + std::to_string(feature) + "]");
  }
  const StageParams* deformable = nullptr;
  for (const StageParams& st : p.stages) {
    add("-t", transform_word(st));
    add("-m", metric_word(st.metric, files));
    add("-c", "[" + x_list(st.convergence.iterations) + "," + number(st.convergence.threshold) + "," +
                  std::to_string(st.convergence.window) + "]");
    add("-f", x_list(st.shrink_factors));
    add("-s", x_list(st.smoothing_sigmas) + (st.sigmas_in_mm ? "mm" : "vox"));
    if (!is_linear(st.transform) && deformable == nullptr) deformable = &st;
  }
  if (!files.fixed_mask.empty() || !files.moving_mask.empty())
    add("-x", "[" + null_or(files.fixed_mask) + "," + null_or(files.moving_mask) + "]");
  // Written from the first deformable stage; register_command_reproduces tells when stages differ.
  if (deformable != nullptr && deformable->optimizer != default_optimizer(deformable->transform))
    add("--field-optimizer", optimizer_name(deformable->optimizer));
  if (deformable != nullptr && !deformable->adam_bfloat16_moments) add("--adam-moments", "float32");
  add("--device", to_string(p.device));
  if (p.inverse_iterations != 50) add("--inverse-iterations", std::to_string(p.inverse_iterations));
  if (!p.compute_inverse) w.push_back("--no-inverse-warp");
  if (files.warp_extension != ".nii.gz") add("--warp-extension", files.warp_extension);

  std::string line;
  for (const std::string& word : w) line += (line.empty() ? "" : " ") + shell_word(word);
  return line;
}

bool register_command_reproduces(const RegistrationParams& params, const RegistrationFiles& files) {
  try {
    const RegisterCommand c = parse_register_command(format_register_command(params, files));
    return c.params == params && c.files == files;
  } catch (const Error&) {
    return false;  // e.g. a file name with ',' that the grammar splits
  }
}

std::vector<std::string> split_command_line(const std::string& line) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (ch == '\\' && i + 1 < line.size()) {
      word += line[++i];
    } else if (ch == '\'' || ch == '"') {
      std::size_t j = i + 1;
      for (; j < line.size() && line[j] != ch; ++j) {
        if (ch == '"' && line[j] == '\\' && j + 1 < line.size() &&
            std::string("\"\\$`").find(line[j + 1]) != std::string::npos)
          ++j;
        word += line[j];
      }
      if (j >= line.size())
        throw_error(ErrorKind::InvalidArgument, "command line", std::string("unclosed ") + ch + " quote");
      i = j;
    } else {
      word += ch;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

std::string register_command_help() {
  std::string s;
  for (const OptionSpec& o : kOptions)
    s += std::string("  ") + o.names + (o.takes == Takes::Flag ? "" : " VALUE") +
         (o.takes == Takes::Values ? " ..." : "") + "\n      " + o.help + "\n";
  return s;
}

bool operator==(const MetricParams& a, const MetricParams& b) {
  return a.type == b.type && a.weight == b.weight && a.radius == b.radius &&
         a.cc_min_std == b.cc_min_std && a.cc_epsilon == b.cc_epsilon && a.bins == b.bins;
}

bool operator==(const ConvergenceParams& a, const ConvergenceParams& b) {
  return a.iterations == b.iterations && a.threshold == b.threshold && a.window == b.window;
}

bool operator==(const StageParams& a, const StageParams& b) {
  return a.transform == b.transform && a.step == b.step && a.gradient_sigma == b.gradient_sigma &&
         a.field_sigma == b.field_sigma && a.optimizer == b.optimizer &&
         a.adam_epsilon == b.adam_epsilon && a.adam_beta1 == b.adam_beta1 &&
         a.adam_beta2 == b.adam_beta2 && a.adam_bfloat16_moments == b.adam_bfloat16_moments &&
         a.metric == b.metric && a.convergence == b.convergence &&
         a.shrink_factors == b.shrink_factors && a.smoothing_sigmas == b.smoothing_sigmas &&
         a.sigmas_in_mm == b.sigmas_in_mm;
}

bool operator==(const InitialTransform& a, const InitialTransform& b) {
  for (int i = 0; i < 9; ++i)
    if (a.affine.matrix.m[i] != b.affine.matrix.m[i]) return false;
  return a.type == b.type && a.affine.offset.x == b.affine.offset.x &&
         a.affine.offset.y == b.affine.offset.y && a.affine.offset.z == b.affine.offset.z;
}

bool operator==(const RegistrationParams& a, const RegistrationParams& b) {
  return a.initial == b.initial && a.stages == b.stages && a.device == b.device &&
         a.inverse_iterations == b.inverse_iterations &&
         a.inverse_tolerance_mm == b.inverse_tolerance_mm && a.compute_inverse == b.compute_inverse;
}

bool operator==(const RegistrationFiles& a, const RegistrationFiles& b) {
  return a.fixed == b.fixed && a.moving == b.moving && a.fixed_mask == b.fixed_mask &&
         a.moving_mask == b.moving_mask && a.output_prefix == b.output_prefix &&
         a.warped == b.warped && a.inverse_warped == b.inverse_warped &&
         a.initial_transform == b.initial_transform &&
         a.invert_initial_transform == b.invert_initial_transform &&
         a.warp_extension == b.warp_extension;
}

}  // namespace gigareg
