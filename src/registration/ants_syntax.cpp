// The option grammar of antsRegistration and antsApplyTransforms.

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/device/lncc.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::ants {
namespace {

[[noreturn]] void bad(const std::string& text, const std::string& what) {
  throw_error(ErrorKind::InvalidArgument, "'" + text + "'", what);
}

std::string trim(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool parse_double(const std::string& s, double& out) {
  const std::string t = trim(s);
  if (t.empty()) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return errno == 0 && end == t.c_str() + t.size() && std::isfinite(out);
}

double number(const std::string& text, const std::string& item, const char* what) {
  double v = 0;
  if (!parse_double(item, v)) {
    // Told apart for the user: a typo, or a number that double cannot hold (1e999, inf, nan).
    const std::string t = trim(item);
    char* end = nullptr;
    (void)std::strtod(t.c_str(), &end);
    const bool numeric = !t.empty() && end == t.c_str() + t.size();
    bad(text, std::string(what) + " '" + item + "' is " + (numeric ? "not a finite number" : "not a number"));
  }
  return v;
}

int integer(const std::string& text, const std::string& item, const char* what) {
  const double v = number(text, item, what);
  if (v != std::floor(v) || std::abs(v) > 1e9)
    bad(text, std::string(what) + " '" + item + "' is not an integer");
  return int(v);
}

bool is_null(const std::string& s) {
  const std::string l = lower(trim(s));
  return l.empty() || l == "null" || l == "none";
}

}  // namespace

Call parse_call(const std::string& text_in) {
  const std::string text = trim(text_in);
  Call c;
  const std::size_t open = text.find('[');
  if (open == std::string::npos) {
    if (text.find(']') != std::string::npos) bad(text, "a ']' without '['");
    if (text.empty()) bad(text, "empty value");
    c.name = text;
    return c;
  }
  if (text.back() != ']') bad(text, "the value must end with ']'");
  c.bracketed = true;
  c.name = trim(text.substr(0, open));
  const std::string inner = text.substr(open + 1, text.size() - open - 2);
  if (inner.find('[') != std::string::npos || inner.find(']') != std::string::npos)
    bad(text, "nested or unbalanced brackets");
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = inner.find(',', start);
    c.args.push_back(trim(inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (c.args.size() == 1 && c.args[0].empty()) c.args.clear();
  return c;
}

std::vector<double> parse_x_list(const std::string& text_in) {
  const std::string text = trim(text_in);
  if (text.empty()) bad(text, "empty list");
  std::vector<double> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t x = text.find('x', start);
    const std::string item = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
    out.push_back(number(text, item, "the list item"));
    if (x == std::string::npos) break;
    start = x + 1;
  }
  return out;
}

std::vector<int> parse_int_x_list(const std::string& text) {
  std::vector<int> out;
  for (double v : parse_x_list(text)) {
    if (v != std::floor(v) || v < 0 || v > 1e9) bad(text, "expected non-negative integers");
    out.push_back(int(v));
  }
  return out;
}

ConvergenceParams parse_convergence(const std::string& text) {
  const Call c = parse_call(text);
  ConvergenceParams p;
  if (!c.bracketed) {
    p.iterations = parse_int_x_list(c.name);
    return p;
  }
  if (!c.name.empty()) bad(text, "expected [iterations,threshold,window]");
  if (c.args.empty() || c.args.size() > 3) bad(text, "expected [iterations(,threshold(,window))]");
  p.iterations = parse_int_x_list(c.args[0]);
  if (c.args.size() > 1) p.threshold = number(text, c.args[1], "the convergence threshold");
  if (c.args.size() > 2) {
    p.window = integer(text, c.args[2], "the convergence window");
    if (p.window < 1) bad(text, "the convergence window must be >= 1");
  }
  return p;
}

Sigmas parse_smoothing_sigmas(const std::string& text_in) {
  std::string text = trim(text_in);
  Sigmas s;
  if (text.size() > 3 && lower(text.substr(text.size() - 3)) == "vox") {
    s.in_mm = false;
    text = text.substr(0, text.size() - 3);
  } else if (text.size() > 2 && lower(text.substr(text.size() - 2)) == "mm") {
    text = text.substr(0, text.size() - 2);
  }
  s.values = parse_x_list(text);
  for (double v : s.values)
    if (v < 0) bad(text_in, "smoothing sigmas must be >= 0");
  return s;
}

MetricSpec parse_metric(const std::string& text) {
  const Call c = parse_call(text);
  if (!c.bracketed) bad(text, "expected Metric[fixed,moving,...], e.g. CC[f.nii.gz,m.nii.gz,1,4]");
  const std::string name = lower(c.name);
  MetricSpec m;
  if (c.args.size() < 2) bad(text, "the metric needs the fixed and the moving image");
  m.fixed = c.args[0];
  m.moving = c.args[1];
  if (m.fixed.empty() || m.moving.empty()) bad(text, "empty image name");
  if (c.args.size() > 2) {
    m.params.weight = number(text, c.args[2], "the metric weight");
    if (!(m.params.weight > 0)) bad(text, "the metric weight must be > 0");
  }
  if (name == "cc") {
    m.params.type = MetricType::CC;
    m.params.radius = 4;  // ANTs' usual radius when none is given
    if (c.args.size() > 3) m.params.radius = integer(text, c.args[3], "the CC radius");
    if (m.params.radius < 1 || m.params.radius > kLnccMaxRadius)
      bad(text, "the CC radius must be 1.." + std::to_string(kLnccMaxRadius));
    if (c.args.size() > 6) bad(text, "too many CC arguments");
  } else if (name == "mi" || name == "mattes") {
    m.params.type = MetricType::MI;
    if (c.args.size() > 3) m.params.bins = integer(text, c.args[3], "the number of MI bins");
    if (m.params.bins < 5 || m.params.bins > 128) bad(text, "MI bins must be 5..128");
    if (c.args.size() > 6) bad(text, "too many MI arguments");
  } else if (name == "meansquares" || name == "msq") {
    m.params.type = MetricType::MeanSquares;
    if (c.args.size() > 6) bad(text, "too many MeanSquares arguments");
  } else {
    bad(text, "unknown metric '" + c.name + "' (CC, MI, Mattes, MeanSquares)");
  }
  // Arguments 5 and 6 (sampling strategy and percentage) are accepted: gigareg samples densely.
  if (c.args.size() > 4) {
    const std::string strategy = lower(c.args[4]);
    if (strategy != "none" && strategy != "regular" && strategy != "random" && !strategy.empty())
      bad(text, "unknown sampling strategy '" + c.args[4] + "' (None, Regular, Random)");
  }
  if (c.args.size() > 5) {
    const double pct = number(text, c.args[5], "the sampling percentage");
    if (!(pct > 0 && pct <= 1)) bad(text, "the sampling percentage must be in (0, 1]");
  }
  return m;
}

void parse_transform(const std::string& text, StageParams& stage) {
  const Call c = parse_call(text);
  const std::string name = lower(c.name);
  auto step = [&](double fallback) {
    if (c.args.empty()) return fallback;
    const double g = number(text, c.args[0], "the gradient step");
    if (!(g > 0)) bad(text, "the gradient step must be > 0");
    return g;
  };
  auto nonneg = [&](std::size_t i, double fallback, const char* what) {
    if (c.args.size() <= i) return fallback;
    const double v = number(text, c.args[i], what);
    if (v < 0) bad(text, std::string(what) + " must be >= 0");
    return v;
  };
  if (name == "translation" || name == "rigid" || name == "affine") {
    if (c.args.size() > 1) bad(text, "expected " + c.name + "[gradientStep]");
    stage.transform = name == "translation" ? TransformType::Translation
                      : name == "rigid"     ? TransformType::Rigid
                                            : TransformType::Affine;
    stage.step = step(0.1);
  } else if (name == "greedy") {
    if (c.args.size() > 3) bad(text, "expected Greedy[gradientStep,sigmaGrad,sigmaWarp]");
    stage.transform = TransformType::Greedy;
    stage.optimizer = FieldOptimizer::Auto;  // Adam
    stage.step = step(0.1);
    stage.gradient_sigma = nonneg(1, 2.0, "sigmaGrad");
    stage.field_sigma = nonneg(2, 1.0, "sigmaWarp");
  } else if (name == "syn" || name == "gaussiandisplacementfield") {
    if (c.args.size() > 3)
      bad(text, "expected " + c.name + "[gradientStep,updateFieldVariance,totalFieldVariance]");
    stage.transform = name == "syn" ? TransformType::SyN : TransformType::Greedy;
    // ANTs' algorithms: the normalised smoothed gradient, no Adam.
    stage.optimizer = FieldOptimizer::GradientDescent;
    stage.step = step(0.1);
    // ANTs' arguments are variances in voxels^2.
    stage.gradient_sigma = std::sqrt(nonneg(1, 3.0, "the update field variance"));
    stage.field_sigma = std::sqrt(nonneg(2, 0.0, "the total field variance"));
  } else if (name == "similarity" || name == "bsplinesyn" || name == "timevaryingvelocityfield" ||
             name == "bspline" || name == "exponential" || name == "bsplinedisplacementfield" ||
             name == "compositeaffine") {
    bad(text, "the " + c.name + " transform is not supported (Translation, Rigid, Affine, Greedy, "
              "GaussianDisplacementField, SyN)");
  } else {
    bad(text, "unknown transform '" + c.name + "' (Translation, Rigid, Affine, Greedy, "
              "GaussianDisplacementField, SyN)");
  }
}

InitialSpec parse_initial_transform(const std::string& text) {
  const Call c = parse_call(text);
  InitialSpec s;
  if (!c.bracketed) {
    s.type = InitialTransformType::Given;
    s.file = c.name;
    return s;
  }
  if (!c.name.empty()) bad(text, "expected file, [file,useInverse] or [fixed,moving,feature]");
  if (c.args.size() == 3) {
    s.fixed = c.args[0];
    s.moving = c.args[1];
    const int f = integer(text, c.args[2], "the initialisation feature");
    switch (f) {
      case 0: s.type = InitialTransformType::GeometricCenter; break;
      case 1: s.type = InitialTransformType::CenterOfMass; break;
      case 2: s.type = InitialTransformType::Origins; break;
      case 3: s.type = InitialTransformType::Moments; break;
      default:
        bad(text, "the feature must be 0 (image centres), 1 (centres of mass), 2 (origins) or "
                  "3 (moments)");
    }
    return s;
  }
  if (c.args.size() == 1 || c.args.size() == 2) {
    s.type = InitialTransformType::Given;
    s.file = c.args[0];
    if (s.file.empty()) bad(text, "empty transform file name");
    if (c.args.size() == 2) {
      const int inv = integer(text, c.args[1], "the useInverse flag");
      if (inv != 0 && inv != 1) bad(text, "useInverse must be 0 or 1");
      s.invert = inv == 1;
    }
    return s;
  }
  bad(text, "expected file, [file,useInverse] or [fixed,moving,feature]");
}

OutputSpec parse_output(const std::string& text) {
  const Call c = parse_call(text);
  OutputSpec o;
  if (!c.bracketed) {
    o.prefix = c.name;
    return o;
  }
  if (!c.name.empty() || c.args.empty() || c.args.size() > 3)
    bad(text, "expected prefix or [prefix,warped(,inverseWarped)]");
  o.prefix = c.args[0];
  if (o.prefix.empty()) bad(text, "empty output prefix");
  if (c.args.size() > 1) o.warped = c.args[1];
  if (c.args.size() > 2) o.inverse_warped = c.args[2];
  return o;
}

MaskSpec parse_masks(const std::string& text) {
  const Call c = parse_call(text);
  MaskSpec m;
  if (!c.bracketed) {
    if (!is_null(c.name)) m.fixed = c.name;
    return m;
  }
  if (!c.name.empty() || c.args.empty() || c.args.size() > 2)
    bad(text, "expected fixedMask or [fixedMask,movingMask] (NULL for none)");
  if (!is_null(c.args[0])) m.fixed = c.args[0];
  if (c.args.size() > 1 && !is_null(c.args[1])) m.moving = c.args[1];
  return m;
}

TransformFileSpec parse_transform_file(const std::string& text) {
  const Call c = parse_call(text);
  TransformFileSpec t;
  if (!c.bracketed) {
    t.file = c.name;
    return t;
  }
  if (!c.name.empty() || c.args.empty() || c.args.size() > 2)
    bad(text, "expected file or [file,useInverse]");
  t.file = c.args[0];
  if (t.file.empty()) bad(text, "empty transform file name");
  if (c.args.size() == 2) {
    const int inv = integer(text, c.args[1], "the useInverse flag");
    if (inv != 0 && inv != 1) bad(text, "useInverse must be 0 or 1");
    t.invert = inv == 1;
  }
  return t;
}

Interpolation parse_interpolation(const std::string& text) {
  const std::string l = lower(parse_call(text).name);
  if (l == "linear") return Interpolation::Linear;
  if (l == "nearestneighbor" || l == "nearest") return Interpolation::Nearest;
  if (l == "genericlabel" || l == "label") return Interpolation::Label;
  if (l == "bspline") {  // BSpline or BSpline[order]; ANTs' default order is 3
    const Call c = parse_call(text);
    if (c.args.size() > 1 || (c.args.size() == 1 && trim(c.args[0]) != "3"))
      bad(text, "only cubic B-splines are supported: BSpline or BSpline[3]");
    return Interpolation::BSpline;
  }
  if (l == "multilabel")
    bad(text, "MultiLabel is not supported: use GenericLabel (label voting, ITK's "
              "LabelImageGenericInterpolateImageFunction)");
  bad(text, "unknown or unsupported interpolation (Linear, NearestNeighbor, GenericLabel, BSpline[3])");
}

DeviceChoice parse_device(const std::string& text) {
  const std::string l = lower(trim(text));
  if (l == "cpu") return DeviceChoice::Cpu;
  if (l == "cuda" || l == "gpu") return DeviceChoice::Cuda;
  if (l == "auto") return DeviceChoice::Auto;
  bad(text, "the device must be cpu, cuda or auto");
}

}  // namespace gigareg::ants
