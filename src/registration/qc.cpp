// The QC picture of a registration (include/gigareg/qc.hpp): three orthogonal physical slices of
// the fixed image, the warped moving image and their checkerboard, windowed and written as PNG.

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gigareg/device/interpolate.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/qc.hpp"
#include "io/io_internal.hpp"

namespace gigareg {
namespace {

/// A view of the patient: the physical (LPS) axis along the tile's columns (left to right) and
/// rows (top to bottom), each with the sign of its direction; the third axis is the normal.
struct ViewAxes {
  int right_axis, right_sign, down_axis, down_sign, normal_axis;
};
// LPS: +x is the patient's left, +y posterior, +z superior.
constexpr ViewAxes kAxial{0, +1, 1, +1, 2};     // right on the left, anterior up
constexpr ViewAxes kCoronal{0, +1, 2, -1, 1};   // right on the left, superior up
constexpr ViewAxes kSagittal{1, +1, 2, -1, 0};  // anterior on the left, superior up
constexpr ViewAxes kViews[3] = {kAxial, kCoronal, kSagittal};

struct Window {
  double lo = 0, hi = 1;
  std::uint8_t grey(float v) const {
    if (!std::isfinite(v)) return 0;
    // A window of huge values can be empty (lo + 1 == lo beyond 2^53): 0 / 0 would be NaN, and
    // NaN must not reach the integer conversion below.
    const double span = hi - lo;
    const double t = span > 0 ? (double(v) - lo) / span : 0.0;
    if (!(t > 0)) return 0;
    if (t >= 1) return 255;
    return std::uint8_t(std::lround(255.0 * t));
  }
};

/// The intensities at the given percentiles of the image's finite non-zero voxels (all finite
/// voxels when every one is 0), over a regular subsample of about 2 million voxels for larger
/// images: percentiles barely change and big volumes stay fast. Zeros are left out because the
/// background of skull-stripped, padded or resampled images is exactly 0 and often most of the
/// grid: counted, it would push the window's top into the brightest tissue and saturate it.
/// The subsample is every stride-th voxel of the whole grid in raster order; each process takes
/// those in its owned planes (a contiguous range of that order) and every process gets them all:
/// the same values as one process, so the same order statistics.
Window robust_window(const Volume<float>& image, const Box& owned, double low_percent, double high_percent,
                     const Partition& part) {
  const Geometry& g = image.geometry();
  const index_t plane = g.size.x * g.size.y;
  const index_t stride = std::max<index_t>(1, g.voxel_count() / 2'000'000);
  const index_t begin = owned.lo.z * plane, end = owned.hi().z * plane;
  const float* data = image.data() - image.box().lo.z * plane;  // indexed by the global raster index
  std::vector<std::int64_t> mine;  // float bits of the kept values
  bool any_finite = false;
  for (index_t i = (begin + stride - 1) / stride * stride; i < end; i += stride) {
    const float v = data[i];
    any_finite = any_finite || std::isfinite(v);
    if (std::isfinite(v) && v != 0.0f) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, &v, sizeof v);
      mine.push_back(std::int64_t(bits));
    }
  }
  // Every process's values, padded to the largest count with -1 (no float's bits).
  const std::vector<std::int64_t> counts = part.gather_host_values({std::int64_t(mine.size()), any_finite ? 1 : 0});
  std::int64_t longest = 0;
  any_finite = false;
  for (std::size_t r = 0; r < counts.size(); r += 2) {
    longest = std::max(longest, counts[r]);
    any_finite = any_finite || counts[r + 1] != 0;
  }
  mine.resize(std::size_t(longest), -1);
  std::vector<float> values;
  for (std::int64_t bits : part.size() == 1 ? mine : part.gather_host_values(mine)) {
    if (bits < 0) continue;
    const std::uint32_t b = std::uint32_t(bits);
    float v = 0;
    std::memcpy(&v, &b, sizeof v);
    values.push_back(v);
  }
  if (values.empty() && any_finite) values.push_back(0.0f);
  Window w;
  if (values.empty()) return w;
  auto at = [&](double percent) {
    const double rank = std::clamp(percent, 0.0, 100.0) / 100.0 * double(values.size() - 1);
    const auto k = values.begin() + std::ptrdiff_t(std::lround(rank));
    std::nth_element(values.begin(), k, values.end());
    return double(*k);
  };
  w.lo = at(low_percent);
  w.hi = at(high_percent);
  if (!(w.hi > w.lo)) w.hi = w.lo + 1;  // a constant image: everything at the low end
  return w;
}

struct Tile {
  int width = 0, height = 0;
};

/// Samples an image along one view: the physical point of tile pixel (c, r).
class Slicer {
 public:
  Slicer(const Geometry& grid, const ViewAxes& view, double pixel_mm)
      : view_(view), pixel_(pixel_mm), to_index_(grid.physical_to_index_map()) {
    const BoundingBox bb = grid.physical_bounds();
    const Vec3d centre = grid.index_to_physical({0.5 * double(grid.size.x - 1), 0.5 * double(grid.size.y - 1),
                                                 0.5 * double(grid.size.z - 1)});
    extent_right_ = bb.max[view.right_axis] - bb.min[view.right_axis];
    extent_down_ = bb.max[view.down_axis] - bb.min[view.down_axis];
    start_right_ = view.right_sign > 0 ? bb.min[view.right_axis] : bb.max[view.right_axis];
    start_down_ = view.down_sign > 0 ? bb.min[view.down_axis] : bb.max[view.down_axis];
    normal_ = centre[view.normal_axis];
    tile_.width = std::max(1, int(std::ceil(extent_right_ / pixel_mm - 1e-6)));
    tile_.height = std::max(1, int(std::ceil(extent_down_ / pixel_mm - 1e-6)));
  }

  const Tile& tile() const { return tile_; }
  double longest_side_mm() const { return std::max(extent_right_, extent_down_); }

  /// Millimetres from the tile's top-left corner to the centre of pixel (c, r).
  double right_mm(int c) const { return (c + 0.5) * pixel_; }
  double down_mm(int r) const { return (r + 0.5) * pixel_; }

  /// The continuous grid index that tile pixel (c, r) samples.
  Vec3f index_of(int c, int r) const {
    Vec3d p{0, 0, 0};
    p[view_.right_axis] = start_right_ + view_.right_sign * right_mm(c);
    p[view_.down_axis] = start_down_ + view_.down_sign * down_mm(r);
    p[view_.normal_axis] = normal_;
    const Vec3d i = to_index_.matrix * p + to_index_.offset;
    return Vec3f{float(i.x), float(i.y), float(i.z)};
  }
  static float sample(const Volume<float>& image, Vec3f index) {
    return sample_linear(image.view(), index, Boundary::Zero);
  }

 private:
  ViewAxes view_;
  double pixel_;
  Affined to_index_;
  double extent_right_ = 0, extent_down_ = 0, start_right_ = 0, start_down_ = 0, normal_ = 0;
  Tile tile_;
};

void check_volume(const Volume<float>& v, const char* what, const Box& needed) {
  if (v.empty() && needed.voxel_count() > 0)
    throw_error(ErrorKind::InvalidArgument, "QC picture", std::string(what) + " is empty");
  if (v.empty()) return;
  if (v.space() != MemorySpace::Host)
    throw_error(ErrorKind::InvalidArgument, "QC picture", std::string(what) + " must be a host volume");
  if (v.components() != 1)
    throw_error(ErrorKind::InvalidArgument, "QC picture", std::string(what) + " must be a scalar image");
  if (!v.box().contains(needed))
    throw_error(ErrorKind::InvalidArgument, "QC picture",
                std::string(what) + " must hold planes " + std::to_string(needed.lo.z) + " to " +
                    std::to_string(needed.hi().z - 1) + " of its grid (the whole grid in one process)");
  v.geometry().validate(std::string("QC picture: ") + what);
}

/// Byte-wise maximum over processes of `greys` (the same length everywhere; each pixel's owner
/// holds its grey, the others 0): six bytes to a gathered integer.
void combine_greys(std::vector<std::uint8_t>& greys, const Partition& part) {
  constexpr std::size_t kPerValue = 6;  // 48 bits: gather_host_values carries up to 2^53 exactly
  const std::size_t n = (greys.size() + kPerValue - 1) / kPerValue;
  std::vector<std::int64_t> packed(n, 0);
  for (std::size_t i = 0; i < greys.size(); ++i)
    packed[i / kPerValue] |= std::int64_t(greys[i]) << (8 * (i % kPerValue));
  const std::vector<std::int64_t> all = part.gather_host_values(packed);
  for (std::size_t r = 0; r < all.size(); r += n)
    for (std::size_t i = 0; i < greys.size(); ++i)
      greys[i] = std::max(greys[i], std::uint8_t(all[r + i / kPerValue] >> (8 * (i % kPerValue)) & 0xff));
}

}  // namespace

QcPicture make_qc_picture(const Volume<float>& fixed, const Volume<float>& warped, const QcOptions& options) {
  return make_qc_picture(fixed, warped, options, single_process());
}

Box qc_picture_planes(const Geometry& fixed_grid, const Partition& part) {
  // The upper tap of the trilinear samples whose lower tap is the last owned plane.
  const Box owned = part.owned(fixed_grid.size);
  Box b = owned;
  if (owned.voxel_count() > 0 && owned.hi().z < fixed_grid.size.z) ++b.size.z;
  return b;
}

QcPicture make_qc_picture(const Volume<float>& fixed, const Volume<float>& warped, const QcOptions& options,
                          const Partition& part) {
  const Geometry& g = fixed.geometry();
  const Box owned = part.owned(g.size);
  const Box needed = qc_picture_planes(g, part);
  check_volume(fixed, "the fixed image", needed);
  check_volume(warped, "the warped image", needed);
  if (!fixed.empty() && !warped.empty() && !g.equals(warped.geometry(), 1e-4))
    throw_error(ErrorKind::InvalidArgument, "QC picture",
                "the warped image is not on the fixed grid (" + warped.geometry().describe() + " vs " +
                    g.describe() + ")");
  if (options.max_tile_pixels < 8 || options.checker_squares < 1 || options.gap < 0 ||
      !(options.low_percentile < options.high_percentile))
    throw_error(ErrorKind::InvalidArgument, "QC picture", "bad options (tile size, checker squares, gap or percentiles)");

  // Square pixels of the finest spacing, coarser when a tile would exceed max_tile_pixels.
  const BoundingBox bb = g.physical_bounds();
  const double longest = std::max({bb.max.x - bb.min.x, bb.max.y - bb.min.y, bb.max.z - bb.min.z});
  const double pixel_mm = std::max(std::min({g.spacing.x, g.spacing.y, g.spacing.z}), longest / options.max_tile_pixels);

  const Slicer slicers[3] = {Slicer(g, kViews[0], pixel_mm), Slicer(g, kViews[1], pixel_mm),
                             Slicer(g, kViews[2], pixel_mm)};
  int row_height = 0, x = 0;
  int column_x[3];
  for (int v = 0; v < 3; ++v) {
    column_x[v] = x;
    x += slicers[v].tile().width + options.gap;
    row_height = std::max(row_height, slicers[v].tile().height);
  }
  QcPicture pic;
  pic.width = x - options.gap;
  pic.height = 3 * row_height + 2 * options.gap;
  pic.pixels.assign(std::size_t(pic.width) * std::size_t(pic.height), 0);

  const Window fixed_window = robust_window(fixed, owned, options.low_percentile, options.high_percentile, part);
  const Window warped_window = robust_window(warped, owned, options.low_percentile, options.high_percentile, part);
  // The fixed and warped greys of every tile pixel, taken by the process that owns the plane of
  // the sample's lower z tap (clamped to the grid): it holds both taps, so its sample is the one
  // process's, bit for bit; the other processes leave 0 and the maximum over processes keeps it.
  std::vector<std::uint8_t> greys;
  for (const Slicer& s : slicers)
    for (int r = 0; r < s.tile().height; ++r)
      for (int c = 0; c < s.tile().width; ++c) {
        const Vec3f at = s.index_of(c, r);
        const float z = std::floor(at.z);
        const index_t lower = !(z > 0.f) ? 0 : z >= float(g.size.z - 1) ? g.size.z - 1 : index_t(z);
        const bool mine = lower >= owned.lo.z && lower < owned.hi().z;
        greys.push_back(mine ? fixed_window.grey(Slicer::sample(fixed, at)) : 0);
        greys.push_back(mine ? warped_window.grey(Slicer::sample(warped, at)) : 0);
      }
  if (part.size() > 1) combine_greys(greys, part);

  std::size_t next = 0;
  for (int v = 0; v < 3; ++v) {
    const Slicer& s = slicers[v];
    const Tile& t = s.tile();
    const double square_mm = s.longest_side_mm() / options.checker_squares;
    const int top_pad = (row_height - t.height) / 2;  // centre shorter tiles in their row
    for (int r = 0; r < t.height; ++r)
      for (int c = 0; c < t.width; ++c) {
        const std::uint8_t f = greys[next++];
        const std::uint8_t w = greys[next++];
        const long checker = long(std::floor(s.right_mm(c) / square_mm)) + long(std::floor(s.down_mm(r) / square_mm));
        const std::uint8_t values[3] = {f, w, (checker % 2 == 0) ? f : w};
        for (int row = 0; row < 3; ++row) {
          const int y = row * (row_height + options.gap) + top_pad + r;
          pic.pixels[std::size_t(y) * std::size_t(pic.width) + std::size_t(column_x[v] + c)] = values[row];
        }
      }
  }
  return pic;
}

void write_png(const std::string& path, const QcPicture& picture) {
  if (io_detail::extension_of(path) != ".png")
    throw_error(ErrorKind::InvalidArgument, path, "the QC picture is written as PNG: give a name ending in .png");
  if (picture.width <= 0 || picture.height <= 0 ||
      picture.pixels.size() != std::size_t(picture.width) * std::size_t(picture.height))
    throw_error(ErrorKind::InvalidArgument, path, "the picture is empty or its size does not match its pixels");
  register_itk_io_factories();  // as every gigareg writer: callers read the PNG back through ITK

  // Encoded in memory by libpng's simplified API (its errors come back as a return value), then
  // written with checked write(2) calls. ITK's PNGImageIO is not used: when the disk fills up it
  // frees memory it did not allocate inside its setjmp error path (SIGSEGV).
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(picture.width);
  image.height = png_uint_32(picture.height);
  image.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  const png_int_32 stride = png_int_32(picture.width);
  if (!png_image_write_get_memory_size(image, size, 0, picture.pixels.data(), stride, nullptr))
    throw_error(ErrorKind::Io, path, std::string("encoding the PNG failed: ") + image.message);
  std::vector<unsigned char> bytes(size);
  if (!png_image_write_to_memory(&image, bytes.data(), &size, 0, picture.pixels.data(), stride, nullptr))
    throw_error(ErrorKind::Io, path, std::string("encoding the PNG failed: ") + image.message);
  png_image_free(&image);
  io_detail::StagedFile staged(path);
  io_detail::write_staged_bytes(staged, bytes.data(), std::size_t(size));
}

void write_qc_picture(const std::string& path, const Volume<float>& fixed, const Volume<float>& warped,
                      const QcOptions& options) {
  if (io_detail::extension_of(path) != ".png")  // before the work, not after it
    throw_error(ErrorKind::InvalidArgument, path, "the QC picture is written as PNG: give a name ending in .png");
  write_png(path, make_qc_picture(fixed, warped, options));
}

}  // namespace gigareg
