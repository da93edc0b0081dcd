// ANTs' intensity preprocessing of the metric images. The arithmetic follows ITK's filters as
// antsRegistration calls them (PreprocessImage in ANTs' itkantsRegistrationHelper.hxx): bin
// bounds in float as itk::Statistics::Histogram::Initialize, the quantile interpolation of
// Histogram::Quantile, the window of IntensityWindowingImageFilter, the quantile table and
// gradients of HistogramMatchingImageFilter. What differs: the sums behind the means are taken per
// z slice and then over slices in order (the same for any partition; ITK sums in one running
// total), and the results are stored in float (ANTs keeps double). tests/unit/
// test_intensity_preprocessing.cpp checks the results against ITK's filters themselves.
#include "registration/intensity_preprocessing.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "registration/level_report.hpp"

namespace gigareg::reg {
namespace {

constexpr int kHistogramBins = 256;    // ANTs: ImageToHistogramFilter size and matching levels
constexpr double kMarginalScale = 10;  // ANTs' SetMarginalScale
constexpr int kMatchPoints = 12;       // ANTs' SetNumberOfMatchPoints

/// itk::Math::AlmostEquals for doubles: within 0.1 epsilon, or within 4 units in the last place
/// with the same sign.
bool almost_equal(double a, double b) {
  if (std::abs(a - b) <= 0.1 * std::numeric_limits<double>::epsilon()) return true;
  if (std::signbit(a) != std::signbit(b)) return false;
  std::int64_t ia = 0, ib = 0;
  std::memcpy(&ia, &a, sizeof a);
  std::memcpy(&ib, &b, sizeof b);
  const std::int64_t ulps = ia > ib ? ia - ib : ib - ia;
  return ulps <= 4;
}

/// Calls f(value) for every voxel of `owned` of `image`, slice by slice: `per_slice(k, f)` runs
/// over slice k of the owned box in raster order (each slice on one thread).
template <typename F>
void for_each_owned_slice(const Volume<float>& image, const Box& owned, F&& per_slice_body) {
  GIGAREG_REQUIRE(image.space() == MemorySpace::Host && image.components() == 1 && image.box().contains(owned),
                  "intensity preprocessing needs a scalar host volume holding the owned box");
  const VolumeView<const float> v = image.view();
#pragma omp parallel for schedule(static)
  for (index_t kk = 0; kk < owned.size.z; ++kk) {
    const index_t k = owned.lo.z + kk;
    per_slice_body(kk, [&](auto&& f) {
      for (index_t j = owned.lo.y; j < owned.lo.y + owned.size.y; ++j)
        for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i) f(double(v.at(i, j, k)));
    });
  }
}

struct Summary {
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double mean = 0;
};

/// Minimum, maximum and mean of map(x) over the whole image: exact extremes, and a sum per z
/// slice combined over slices in global order (the same for any partition).
template <typename Map>
Summary summarize(const Volume<float>& image, const Box& owned, const Partition& part, const Map& map) {
  std::vector<double> slice_sums(std::size_t(owned.size.z), 0.0), slice_min(slice_sums.size()),
      slice_max(slice_sums.size());
  for_each_owned_slice(image, owned, [&](index_t kk, auto&& voxels) {
    double sum = 0, lo = std::numeric_limits<double>::infinity(), hi = -lo;
    voxels([&](double x) {
      const double y = map(x);
      sum += y;
      lo = std::min(lo, y);
      hi = std::max(hi, y);
    });
    slice_sums[std::size_t(kk)] = sum;
    slice_min[std::size_t(kk)] = lo;
    slice_max[std::size_t(kk)] = hi;
  });
  Summary s;
  for (std::size_t kk = 0; kk < slice_sums.size(); ++kk) {
    s.min = std::min(s.min, slice_min[kk]);
    s.max = std::max(s.max, slice_max[kk]);
  }
  s.min = part.min(s.min);
  s.max = part.max(s.max);
  const std::vector<double> all = part.gather_host_slices(slice_sums, image.geometry().size.z, 1);
  double total = 0;
  for (double v : all) total += v;
  s.mean = total / double(image.geometry().voxel_count());
  return s;
}

/// Counts of map(x) for the values in [valid_lo, valid_hi] into `h`, over the whole image
/// (integer counts: exact in any order).
template <typename Map>
void fill(IntensityHistogram& h, const Volume<float>& image, const Box& owned, const Partition& part,
          double valid_lo, double valid_hi, const Map& map) {
  std::vector<std::vector<std::int64_t>> per_slice(std::size_t(owned.size.z));
  for_each_owned_slice(image, owned, [&](index_t kk, auto&& voxels) {
    std::vector<std::int64_t> c(h.count.size(), 0);
    voxels([&](double x) {
      const double y = map(x);
      if (!(y >= valid_lo && y <= valid_hi)) return;
      const int b = h.bin_of(y);
      if (b >= 0) ++c[std::size_t(b)];
    });
    per_slice[std::size_t(kk)] = std::move(c);
  });
  std::vector<std::int64_t> mine(h.count.size(), 0);
  for (const auto& c : per_slice)
    for (std::size_t b = 0; b < c.size(); ++b) mine[b] += c[b];
  const std::vector<std::int64_t> all = part.gather_host_values(mine);
  std::fill(h.count.begin(), h.count.end(), 0);
  for (std::size_t r = 0; r < all.size(); r += mine.size())
    for (std::size_t b = 0; b < mine.size(); ++b) h.count[b] += all[r + b];
}

double gradient(double rise, double run) { return almost_equal(run, 0.0) ? 0.0 : rise / run; }

}  // namespace

IntensityHistogram::IntensityHistogram(int bins, double lower, double upper)
    : bin_min(std::size_t(bins)), bin_max(std::size_t(bins)), count(std::size_t(bins), 0) {
  // Histogram::Initialize: the width in float, each bound the double lower plus a float product.
  const float width = (float(upper) - float(lower)) / float(bins);
  for (int j = 0; j + 1 < bins; ++j) {
    bin_min[std::size_t(j)] = lower + double(float(j) * width);
    bin_max[std::size_t(j)] = lower + double((float(j) + 1.0f) * width);
  }
  bin_min[std::size_t(bins - 1)] = lower + double((float(bins) - 1.0f) * width);
  bin_max[std::size_t(bins - 1)] = upper;
}

int IntensityHistogram::bin_of(double value) const {
  const int last = int(bin_min.size()) - 1;
  if (value < bin_min[0]) return -1;
  if (value >= bin_max[std::size_t(last)]) return almost_equal(value, bin_max[std::size_t(last)]) ? last : -1;
  // The last bin whose minimum is at most the value (the bins are contiguous and ordered).
  const auto it = std::upper_bound(bin_min.begin(), bin_min.end(), value);
  return int(it - bin_min.begin()) - 1;
}

double IntensityHistogram::quantile(double p) const {
  const std::size_t size = count.size();
  double total = 0;
  for (std::int64_t c : count) total += double(c);
  double cumulated = 0, f_n = 0, p_n_prev = 0;
  if (p < 0.5) {
    std::size_t n = 0;
    double p_n = 0.0;
    do {
      f_n = double(count[n]);
      cumulated += f_n;
      p_n_prev = p_n;
      p_n = cumulated / total;
      ++n;
    } while (n < size && p_n < p);
    const double proportion = f_n / total;
    return bin_min[n - 1] + ((p - p_n_prev) / proportion) * (bin_max[n - 1] - bin_min[n - 1]);
  }
  std::size_t n = size - 1, m = 0;
  double p_n = 1.0;
  do {
    f_n = double(count[n]);
    cumulated += f_n;
    p_n_prev = p_n;
    p_n = 1.0 - cumulated / total;
    --n;  // wraps below zero on the last pass, as ITK's unsigned index does; n + 1 is used
    ++m;
  } while (m < size && p_n > p);
  const double proportion = f_n / total;
  return bin_max[n + 1] - ((p_n_prev - p) / proportion) * (bin_max[n + 1] - bin_min[n + 1]);
}

double HistogramMatch::operator()(double x) const {
  std::size_t j = 0;
  while (j < source_points.size() && !(x < source_points[j])) ++j;
  if (j == 0) return reference_min + (x - source_min) * lower_gradient;
  if (j == source_points.size()) return reference_max + (x - source_max) * upper_gradient;
  return reference_points[j - 1] + (x - source_points[j - 1]) * gradients[j - 1];
}

IntensityWindow winsorizing_window(const Volume<float>& image, const Box& owned, double lower_quantile,
                                   double upper_quantile, const Partition& part) {
  auto same = [](double x) { return x; };
  const Summary s = summarize(image, owned, part, same);
  // ImageToHistogramFilter's automatic range: the maximum raised by a tenth of a bin.
  const double margin = ((s.max - s.min) / double(kHistogramBins)) / kMarginalScale;
  IntensityHistogram h(kHistogramBins, s.min, s.max + margin);
  fill(h, image, owned, part, -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(), same);
  IntensityWindow w;
  // antsRegistration keeps the quantiles in float.
  w.window_min = double(float(h.quantile(lower_quantile)));
  w.window_max = double(float(h.quantile(upper_quantile)));
  if (!(w.window_max > w.window_min))
    throw_error(ErrorKind::InvalidInput, "intensity preprocessing",
                "the image's intensities between the winsorizing quantiles are constant (" +
                    std::to_string(w.window_min) + "): there is nothing to register");
  w.scale = (1.0 - 0.0) / (w.window_max - w.window_min);
  w.shift = 0.0 - w.window_min * w.scale;
  return w;
}

HistogramMatch histogram_match(const Volume<float>& moving, const Box& moving_owned,
                               const IntensityWindow& moving_window, const Volume<float>& fixed,
                               const Box& fixed_owned, const IntensityWindow& fixed_window,
                               const Partition& part) {
  // One image's histogram of the values at or above its mean (ThresholdAtMeanIntensity), its
  // first bin reaching down to the minimum, and its 12 quantiles.
  struct Side {
    Summary s;
    std::vector<double> points;  // threshold, 12 quantiles, maximum
  };
  auto side = [&](const Volume<float>& image, const Box& owned, const IntensityWindow& window) {
    Side out;
    out.s = summarize(image, owned, part, window);
    IntensityHistogram h(kHistogramBins, out.s.mean, out.s.max);
    h.bin_min[0] = out.s.min;
    h.bin_max[kHistogramBins - 1] = out.s.max;
    fill(h, image, owned, part, out.s.mean, out.s.max, window);
    out.points.push_back(out.s.mean);
    const double delta = 1.0 / (double(kMatchPoints) + 1.0);
    for (int j = 1; j < kMatchPoints + 1; ++j) out.points.push_back(h.quantile(double(j) * delta));
    out.points.push_back(out.s.max);
    return out;
  };
  const Side reference = side(fixed, fixed_owned, fixed_window);
  const Side source = side(moving, moving_owned, moving_window);
  HistogramMatch m;
  m.source_points = source.points;
  m.reference_points = reference.points;
  m.source_min = source.s.min;
  m.source_max = source.s.max;
  m.reference_min = reference.s.min;
  m.reference_max = reference.s.max;
  for (std::size_t j = 0; j + 1 < m.source_points.size(); ++j)
    m.gradients.push_back(gradient(m.reference_points[j + 1] - m.reference_points[j],
                                   m.source_points[j + 1] - m.source_points[j]));
  m.lower_gradient = gradient(m.reference_points.front() - m.reference_min, m.source_points.front() - m.source_min);
  m.upper_gradient = gradient(m.reference_points.back() - m.reference_max, m.source_points.back() - m.source_max);
  return m;
}

MetricImages preprocess_intensities(const IntensityPreprocessing& p, const Volume<float>& fixed,
                                    const Volume<float>& moving, const Partition& part) {
  const Box fixed_owned = part.owned(fixed.geometry().size);
  const Box moving_owned = part.owned(moving.geometry().size);
  auto window_of = [&](const Volume<float>& image, const Box& owned, const char* what) {
    try {
      return winsorizing_window(image, owned, p.lower_quantile, p.upper_quantile, part);
    } catch (const Error& e) {
      throw_error(e.kind(), what, e.problem());
    }
  };
  const IntensityWindow fw = window_of(fixed, fixed_owned, "fixed image");
  const IntensityWindow mw = window_of(moving, moving_owned, "moving image");
  HistogramMatch match;
  if (p.histogram_matching) match = histogram_match(moving, moving_owned, mw, fixed, fixed_owned, fw, part);
  log(LogLevel::Info, "intensity preprocessing for the metrics: fixed [" + fmt(fw.window_min) + ", " +
                          fmt(fw.window_max) + "] and moving [" + fmt(mw.window_min) + ", " + fmt(mw.window_max) +
                          "] (quantiles " + fmt(p.lower_quantile) + " and " + fmt(p.upper_quantile) +
                          ") onto [0, 1]" +
                          (p.histogram_matching ? "; the moving histogram matched to the fixed one" : ""));
  auto mapped = [](const Volume<float>& image, const auto& map) {
    Volume<float> out(image.geometry(), image.box(), 1, MemorySpace::Host);
    const float* in = image.data();
    float* o = out.data();
    const std::int64_t n = std::int64_t(image.voxel_count());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) o[i] = float(map(double(in[i])));
    return out;
  };
  MetricImages out;
  out.fixed = mapped(fixed, fw);
  if (p.histogram_matching)
    out.moving = mapped(moving, [&](double x) { return match(mw(x)); });
  else
    out.moving = mapped(moving, mw);
  return out;
}

}  // namespace gigareg::reg
