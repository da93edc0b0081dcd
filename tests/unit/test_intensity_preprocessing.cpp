// ANTs' intensity preprocessing (--winsorize-image-intensities, --use-histogram-matching) against
// ITK's own filters, called the way antsRegistration's PreprocessImage calls them: the histogram
// bins and quantiles exactly, the windows exactly, the preprocessed images to float rounding.
#include <gtest/gtest.h>

#include <itkHistogramMatchingImageFilter.h>
#include <itkImage.h>
#include <itkImageToHistogramFilter.h>
#include <itkIntensityWindowingImageFilter.h>

#include <cmath>
#include <random>

#include "registration/intensity_preprocessing.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

using namespace gigareg;

namespace {

using ItkImage = itk::Image<double, 3>;  // antsRegistration's images (double unless --float 1)

ItkImage::Pointer to_itk(const Volume<float>& v) {
  const Geometry& g = v.geometry();
  auto img = ItkImage::New();
  ItkImage::RegionType region;
  region.SetSize({{std::size_t(g.size.x), std::size_t(g.size.y), std::size_t(g.size.z)}});
  img->SetRegions(region);
  img->Allocate();
  double* out = img->GetBufferPointer();
  for (index_t e = 0; e < v.voxel_count(); ++e) out[e] = double(v.data()[e]);
  return img;
}

/// PreprocessImage's winsorizing quantiles, as antsRegistration stores them (float).
std::pair<float, float> itk_quantiles(const ItkImage* img, double lower, double upper) {
  using HistogramFilter = itk::Statistics::ImageToHistogramFilter<ItkImage>;
  HistogramFilter::HistogramSizeType size(1);
  size[0] = 256;
  auto automatic = HistogramFilter::InputBooleanObjectType::New();
  automatic->Set(true);
  auto h = HistogramFilter::New();
  h->SetInput(img);
  h->SetAutoMinimumMaximumInput(automatic);
  h->SetHistogramSize(size);
  h->SetMarginalScale(10.0);
  h->Update();
  return {float(h->GetOutput()->Quantile(0, lower)), float(h->GetOutput()->Quantile(0, upper))};
}

ItkImage::Pointer itk_window(const ItkImage* img, double lower, double upper) {
  const auto q = itk_quantiles(img, lower, upper);
  auto w = itk::IntensityWindowingImageFilter<ItkImage, ItkImage>::New();
  w->SetInput(img);
  w->SetWindowMinimum(q.first);
  w->SetWindowMaximum(q.second);
  w->SetOutputMinimum(0.0);
  w->SetOutputMaximum(1.0);
  w->Update();
  return w->GetOutput();
}

ItkImage::Pointer itk_match(const ItkImage* source, const ItkImage* reference) {
  auto m = itk::HistogramMatchingImageFilter<ItkImage, ItkImage>::New();
  m->SetSourceImage(source);
  m->SetReferenceImage(reference);
  m->SetNumberOfHistogramLevels(256);
  m->SetNumberOfMatchPoints(12);
  m->ThresholdAtMeanIntensityOn();
  m->Update();
  return m->GetOutput();
}

/// A brain-like image: a zero background around a blob of integer intensities whose
/// distribution `gamma` bends (so two images differ in histogram, not only in scale), and a few
/// bright outliers (what winsorizing is for).
Volume<float> brain_like(Index3 size, std::uint64_t seed, double gamma, double scale) {
  Geometry g;
  g.size = size;
  Volume<float> v(g);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  for (index_t k = 0; k < size.z; ++k)
    for (index_t j = 0; j < size.y; ++j)
      for (index_t i = 0; i < size.x; ++i) {
        const double x = (i - size.x / 2.0) / size.x, y = (j - size.y / 2.0) / size.y, z = (k - size.z / 2.0) / size.z;
        const double r = std::sqrt(x * x + y * y + z * z);
        double value = 0;
        if (r < 0.4) value = std::round(scale * std::pow(0.2 + 0.8 * u(rng) * (1 - r), gamma));
        if (u(rng) < 0.002) value = 4 * scale;
        v(i, j, k) = float(value);
      }
  return v;
}

double max_difference(const Volume<float>& ours, const ItkImage* itk) {
  double worst = 0;
  const double* ref = itk->GetBufferPointer();
  for (index_t e = 0; e < ours.voxel_count(); ++e)
    worst = std::max(worst, std::abs(double(ours.data()[e]) - ref[e]));
  return worst;
}

}  // namespace

TEST(IntensityPreprocessing, HistogramBinsLookupAndQuantilesAreItks) {
  using ItkHistogram = itk::Statistics::Histogram<double>;
  std::mt19937_64 rng(7);
  for (const auto& range : {std::pair<double, double>{0.0, 255.3}, {-17.25, 3.5}, {0.1, 0.1000001}}) {
    auto itk_h = ItkHistogram::New();
    ItkHistogram::SizeType size(1);
    size[0] = 256;
    ItkHistogram::MeasurementVectorType lo(1), hi(1);
    lo[0] = range.first;
    hi[0] = range.second;
    itk_h->SetMeasurementVectorSize(1);
    itk_h->Initialize(size, lo, hi);
    reg::IntensityHistogram ours(256, range.first, range.second);
    for (unsigned b = 0; b < 256; ++b) {
      ASSERT_EQ(ours.bin_min[b], itk_h->GetBinMin(0, b)) << b;
      ASSERT_EQ(ours.bin_max[b], itk_h->GetBinMax(0, b)) << b;
    }
    // Lookup: bin edges, values inside, outside and at the ends.
    std::uniform_real_distribution<double> u(range.first - 1, range.second + 1);
    std::vector<double> values{range.first, range.second, range.first - 1e-9, range.second + 1e-9};
    for (unsigned b = 0; b < 256; ++b) values.push_back(ours.bin_min[b]);
    for (int n = 0; n < 2000; ++n) values.push_back(u(rng));
    ItkHistogram::IndexType index(1);
    ItkHistogram::MeasurementVectorType m(1);
    for (double v : values) {
      m[0] = v;
      const bool inside = itk_h->GetIndex(m, index);
      ASSERT_EQ(ours.bin_of(v), inside ? int(index[0]) : -1) << v;
      if (inside) {
        ++ours.count[std::size_t(index[0])];
        itk_h->IncreaseFrequencyOfIndex(index, 1);
      }
    }
    for (double p : {0.0, 1e-4, 0.005, 0.01, 0.1, 0.3, 0.4999, 0.5, 0.7, 0.9, 0.99, 0.995, 1.0})
      EXPECT_EQ(ours.quantile(p), itk_h->Quantile(0, p)) << p;
  }
}

TEST(IntensityPreprocessing, WindowsAreAntsQuantilesExactly) {
  const Volume<float> image = brain_like({23, 19, 17}, 3, 1.3, 180);
  const auto itk = to_itk(image);
  const Box all = test::whole_box(image.geometry());
  for (const auto& q : {std::pair<double, double>{0.0, 1.0}, {0.005, 0.995}, {0.01, 0.99}, {0.2, 0.6}}) {
    const reg::IntensityWindow w = reg::winsorizing_window(image, all, q.first, q.second, single_process());
    const auto expected = itk_quantiles(itk, q.first, q.second);
    EXPECT_EQ(w.window_min, double(expected.first)) << q.first;
    EXPECT_EQ(w.window_max, double(expected.second)) << q.second;
  }
}

TEST(IntensityPreprocessing, WinsorizedAndMatchedImagesAreItksToFloatRounding) {
  const Volume<float> fixed = brain_like({23, 19, 17}, 5, 1.0, 200);
  const Volume<float> moving = brain_like({19, 21, 15}, 6, 2.2, 90);
  const auto itk_fixed = itk_window(to_itk(fixed), 0.005, 0.995);
  const auto itk_moving = itk_window(to_itk(moving), 0.005, 0.995);
  IntensityPreprocessing p;
  p.lower_quantile = 0.005;
  p.upper_quantile = 0.995;
  const reg::MetricImages winsorized = reg::preprocess_intensities(p, fixed, moving, single_process());
  EXPECT_LE(max_difference(winsorized.fixed, itk_fixed), 6e-8);
  EXPECT_LE(max_difference(winsorized.moving, itk_moving), 6e-8);

  p.histogram_matching = true;
  const reg::MetricImages matched = reg::preprocess_intensities(p, fixed, moving, single_process());
  const auto itk_matched = itk_match(itk_moving, itk_fixed);
  EXPECT_LE(max_difference(matched.fixed, itk_fixed), 6e-8);
  EXPECT_LE(max_difference(matched.moving, itk_matched), 1e-6);
  // The matching moved the moving image's intensities (the test would not see a no-op).
  EXPECT_GT(max_difference(matched.moving, itk_moving), 0.05);
}

TEST(IntensityPreprocessing, AConstantImageIsAClearError) {
  Geometry g;
  g.size = {6, 5, 4};
  Volume<float> flat(g);
  flat.fill(3.0f);
  const Volume<float> other = brain_like({6, 5, 4}, 1, 1.0, 50);
  IntensityPreprocessing p;
  p.lower_quantile = 0.01;
  EXPECT_TRUE(gigareg::testing::throws_error([&] { reg::preprocess_intensities(p, flat, other, single_process()); },
                                 ErrorKind::InvalidInput, "fixed image", "constant"));
}
