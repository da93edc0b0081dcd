#pragma once
// ANTs' intensity preprocessing of the metric images (--winsorize-image-intensities,
// --use-histogram-matching): what antsRegistration's PreprocessImage does through ITK's
// ImageToHistogramFilter, IntensityWindowingImageFilter and HistogramMatchingImageFilter, with
// statistics over the whole image whatever the partition, so P processes give one process's bytes.

#include <cstdint>
#include <vector>

#include "gigareg/partition.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

/// A one-dimensional histogram with itk::Statistics::Histogram's bins and lookup: equal bins over
/// [lower, upper] computed in float as Histogram::Initialize does, the first bin's minimum and the
/// last bin's maximum settable, values outside the bins not counted (ClipBinsAtEnds).
struct IntensityHistogram {
  std::vector<double> bin_min, bin_max;
  std::vector<std::int64_t> count;

  IntensityHistogram(int bins, double lower, double upper);
  /// The bin of `value` as Histogram::GetIndex finds it; -1 outside the bins.
  int bin_of(double value) const;
  /// Histogram::Quantile(0, p): the intensity below which a fraction p of the counts lies,
  /// interpolated linearly inside its bin.
  double quantile(double p) const;
};

/// Linear map of [window_min, window_max] onto [0, 1], values outside clamped
/// (itk::IntensityWindowingImageFilter with ITK's scale and shift).
struct IntensityWindow {
  double window_min = 0, window_max = 1, scale = 1, shift = 0;
  double operator()(double x) const {
    if (x < window_min) return 0.0;
    if (x > window_max) return 1.0;
    return x * scale + shift;
  }
};

/// The piecewise linear map of itk::HistogramMatchingImageFilter (quantile table and gradients).
struct HistogramMatch {
  std::vector<double> source_points, reference_points, gradients;
  double source_min = 0, source_max = 0, reference_min = 0, reference_max = 0;
  double lower_gradient = 0, upper_gradient = 0;
  double operator()(double x) const;
};

/// The windows of one image: the [lower, upper] quantiles of its 256-bin histogram over [min,
/// max + (max - min) / 2560] (ImageToHistogramFilter, marginal scale 10), rounded to float as
/// antsRegistration stores them. `image` holds at least `owned`; every process passes its own.
IntensityWindow winsorizing_window(const Volume<float>& image, const Box& owned, double lower_quantile,
                                   double upper_quantile, const Partition& part);

/// The map taking the windowed moving intensities onto the windowed fixed ones: 256 histogram
/// levels, 12 match points, histograms of the values at or above each image's mean (ANTs'
/// settings). Statistics as winsorizing_window's.
HistogramMatch histogram_match(const Volume<float>& moving, const Box& moving_owned,
                               const IntensityWindow& moving_window, const Volume<float>& fixed,
                               const Box& fixed_owned, const IntensityWindow& fixed_window,
                               const Partition& part);

/// The metric images: copies of `fixed` and `moving` (host, their boxes) with ANTs'
/// preprocessing applied. Statistics over each grid's owned boxes, combined over processes.
struct MetricImages {
  Volume<float> fixed, moving;
};
MetricImages preprocess_intensities(const IntensityPreprocessing& p, const Volume<float>& fixed,
                                    const Volume<float>& moving, const Partition& part);

}  // namespace gigareg::reg
