#pragma once
// A quality-control picture of a registration: the fixed image, the warped moving image and a
// checkerboard of the two, each cut through the centre of the fixed grid along three orthogonal
// planes, as one grey-level PNG mosaic that a person can check at a glance.
//
// Layout (3 rows x 3 columns, tiles separated by black gaps):
//            axial        coronal       sagittal
//   row 1    fixed        fixed         fixed
//   row 2    warped       warped        warped
//   row 3    checkerboard checkerboard  checkerboard  (squares alternate fixed / warped)
//
// The planes are those of physical (LPS) space, not of the voxel grid, so oblique and
// anisotropic images look as they would in a viewer: every tile is resampled (trilinearly) to
// square pixels over the physical extent of the fixed grid, and oriented in the radiological
// convention: axial seen from the feet with anterior up and the patient's right on the left;
// coronal seen from the front, superior up, right on the left; sagittal with superior up and
// anterior on the left. Intensities are windowed per image to robust percentiles (by default 1%
// to 99% of its non-zero voxels: an exactly-0 background is left out): a few very bright voxels
// do not darken the picture, and images of different modalities each get their own contrast.
// Outside the fixed grid (the corners of an oblique grid's bounding box) tiles are black.

#include <cstdint>
#include <string>
#include <vector>

#include "gigareg/volume.hpp"

namespace gigareg {
class Partition;  // gigareg/partition.hpp
}

namespace gigareg {

struct QcOptions {
  double low_percentile = 1.0;   // intensity shown black (percent of the non-zero voxels)
  double high_percentile = 99.0; // intensity shown white
  int max_tile_pixels = 512;     // longest side of a tile: coarser pixels for very large images
  int checker_squares = 8;       // checkerboard squares across the longest side of a tile
  int gap = 4;                   // black pixels between tiles
};

/// An 8-bit grey image, row-major, row 0 at the top.
struct QcPicture {
  int width = 0, height = 0;
  std::vector<std::uint8_t> pixels;
  std::uint8_t at(int column, int row) const { return pixels[std::size_t(row) * std::size_t(width) + std::size_t(column)]; }
};

/// The mosaic of `fixed` and `warped`: host scalar volumes covering the same grid (the warped
/// moving image is resampled onto the fixed grid). Throws Error(InvalidArgument) otherwise.
QcPicture make_qc_picture(const Volume<float>& fixed, const Volume<float>& warped,
                          const QcOptions& options = {});

/// The same picture from the planes each process holds, under a partition of the fixed grid:
/// `fixed` and `warped` hold (at least) the process's owned planes and the plane above them;
/// every process calls it and gets the single process's picture bit for bit (the windows and
/// the samples combined over processes; no process holds a whole image).
QcPicture make_qc_picture(const Volume<float>& fixed, const Volume<float>& warped, const QcOptions& options,
                          const Partition& part);

/// The planes of the fixed grid that make_qc_picture needs from this process under `part`: its
/// owned planes and the one above them (the whole grid in one process).
Box qc_picture_planes(const Geometry& fixed_grid, const Partition& part);

/// Writes `picture` as an 8-bit grey PNG through ITK's PNGImageIO. The path must end in .png.
/// Like every gigareg writer, the file appears under its name only once complete (a temporary
/// in the same directory is renamed). Errors: Error naming the path.
void write_png(const std::string& path, const QcPicture& picture);

/// make_qc_picture, then write_png.
void write_qc_picture(const std::string& path, const Volume<float>& fixed, const Volume<float>& warped,
                      const QcOptions& options = {});

}  // namespace gigareg
