// The QC picture (gigareg/qc.hpp): mosaic size from the physical extent (square pixels),
// radiological orientation (a bright block at the patient's left, anterior, superior corner lands
// where a viewer shows it), independence from how the voxel grid is stored (a flipped direction
// matrix gives the same picture), the checkerboard, and the PNG read back by ITK.
#include <gtest/gtest.h>

#include <itkImage.h>
#include <itkImageFileReader.h>

#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include <filesystem>
#include <string>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/qc.hpp"
#include "test_util.hpp"

using namespace gigareg;
namespace fs = std::filesystem;

namespace {

template <class F>
Volume<float> sample_physical(const Geometry& g, F f) {
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) v(i, j, k) = float(f(g.index_to_physical({double(i), double(j), double(k)})));
  return v;
}

/// On a grid centred on the origin, three bright bars, each seen by one of the central planes
/// only: along z at the patient's left (LPS x > 0) and front (y < 0), seen in the axial plane;
/// along y at the left and top (z > 0), in the coronal plane; along x at the front and top, in
/// the sagittal plane. Elsewhere a dim background.
double corner_block(const Vec3d& p) {
  const bool left = p.x > 3, front = p.y < -3, top = p.z > 3;
  return ((left && front) || (left && top) || (front && top)) ? 100.0 : 10.0 + 0.01 * p.x;
}

Geometry centred_grid(Index3 size, Vec3d spacing, Mat3d direction = Mat3d::identity()) {
  Geometry g = test::make_geometry(size, spacing, {0, 0, 0}, direction);
  const Vec3d centre = g.index_to_physical({0.5 * double(size.x - 1), 0.5 * double(size.y - 1), 0.5 * double(size.z - 1)});
  g.origin = g.origin - centre;
  return g;
}

/// Mean grey of a tile's quadrant: (right half?, bottom half?).
double quadrant_mean(const QcPicture& pic, int x0, int y0, int w, int h, bool right, bool bottom) {
  double sum = 0;
  int n = 0;
  for (int r = bottom ? h / 2 + 1 : 0; r < (bottom ? h : h / 2 - 1); ++r)
    for (int c = right ? w / 2 + 1 : 0; c < (right ? w : w / 2 - 1); ++c) {
      sum += pic.at(x0 + c, y0 + r);
      ++n;
    }
  return sum / n;
}

}  // namespace

TEST(QcPicture, SquarePixelsOverThePhysicalExtent) {
  // 20 x 30 x 10 voxels of 1 x 1 x 3 mm: 20 x 30 x 30 mm, shown with 1 mm pixels.
  const Geometry g = centred_grid({20, 30, 10}, {1, 1, 3});
  const Volume<float> f = sample_physical(g, corner_block);
  const QcPicture pic = make_qc_picture(f, f);
  // Columns: axial (x by y: 20 x 30), coronal (x by z: 20 x 30), sagittal (y by z: 30 x 30).
  EXPECT_EQ(pic.width, 20 + 20 + 30 + 2 * 4);
  EXPECT_EQ(pic.height, 3 * 30 + 2 * 4);
  EXPECT_EQ(pic.pixels.size(), std::size_t(pic.width) * std::size_t(pic.height));

  // Very large extents get coarser pixels instead of huge tiles.
  QcOptions small;
  small.max_tile_pixels = 15;
  const QcPicture coarse = make_qc_picture(f, f, small);
  EXPECT_EQ(coarse.width, 10 + 10 + 15 + 2 * 4);
  EXPECT_EQ(coarse.height, 3 * 15 + 2 * 4);
}

TEST(QcPicture, RadiologicalOrientationSuperiorUp) {
  const Geometry g = centred_grid({24, 24, 24}, {2, 2, 2});
  const Volume<float> f = sample_physical(g, corner_block);
  const QcPicture pic = make_qc_picture(f, f);
  const int t = 24, gap = 4;
  // The block is at the patient's left (shown on the right), anterior and superior.
  struct Expect {
    const char* view;
    int x0;
    bool right, bottom;
  };
  const Expect expect[] = {{"axial: left on the right, anterior up", 0, true, false},
                           {"coronal: left on the right, superior up", t + gap, true, false},
                           {"sagittal: anterior on the left, superior up", 2 * (t + gap), false, false}};
  for (int row = 0; row < 3; ++row)
    for (const Expect& e : expect) {
      const int y0 = row * (t + gap);
      const double bright = quadrant_mean(pic, e.x0, y0, t, t, e.right, e.bottom);
      for (int q = 0; q < 4; ++q) {
        const bool right = q & 1, bottom = q & 2;
        if (right == e.right && bottom == e.bottom) continue;
        EXPECT_GT(bright, quadrant_mean(pic, e.x0, y0, t, t, right, bottom) + 100) << e.view << ", row " << row;
      }
    }
}

TEST(QcPicture, DoesNotDependOnHowTheGridIsStored) {
  // The same physical image stored RAS-like (x and y index axes reversed) and oblique-free LPS.
  const Geometry lps = centred_grid({22, 26, 18}, {2, 2, 2});
  const Geometry flipped = centred_grid({22, 26, 18}, {2, 2, 2}, Mat3d{{-1, 0, 0, 0, -1, 0, 0, 0, 1}});
  auto smooth = [](const Vec3d& p) { return 50 + 40 * std::sin(0.15 * p.x) * std::cos(0.1 * p.y) + 0.8 * p.z; };
  const Volume<float> a = sample_physical(lps, smooth), b = sample_physical(flipped, smooth);
  const QcPicture pa = make_qc_picture(a, a), pb = make_qc_picture(b, b);
  ASSERT_EQ(pa.width, pb.width);
  ASSERT_EQ(pa.height, pb.height);
  int differ = 0;
  for (std::size_t i = 0; i < pa.pixels.size(); ++i) differ += std::abs(int(pa.pixels[i]) - int(pb.pixels[i])) > 2;
  EXPECT_EQ(differ, 0);
}

TEST(QcPicture, CheckerboardAlternatesFixedAndWarped) {
  const Geometry g = centred_grid({24, 24, 24}, {2, 2, 2});
  const Volume<float> f = sample_physical(g, [](const Vec3d& p) { return p.x + p.y + p.z; });
  const Volume<float> w = sample_physical(g, [](const Vec3d& p) { return -(p.x + p.y + p.z); });
  const QcPicture pic = make_qc_picture(f, w);
  const int t = 24, gap = 4;
  int from_fixed = 0, from_warped = 0, neither = 0;
  for (int v = 0; v < 3; ++v)
    for (int r = 0; r < t; ++r)
      for (int c = 0; c < t; ++c) {
        const int x = v * (t + gap) + c;
        const int fv = pic.at(x, r), wv = pic.at(x, t + gap + r), cv = pic.at(x, 2 * (t + gap) + r);
        if (fv == wv) continue;  // undecidable
        if (cv == fv) ++from_fixed;
        else if (cv == wv) ++from_warped;
        else ++neither;
      }
  EXPECT_EQ(neither, 0);
  EXPECT_GT(from_fixed, 500);
  EXPECT_GT(from_warped, 500);
}

TEST(QcPicture, HugeValuesGiveDefinedGreys) {
  // Issue 18, item 4: an image of huge values (scl_slope 1e30) made an empty window (lo + 1 == lo)
  // and 0 / 0 = NaN reached the integer conversion (the sanitize build, with float-cast-overflow,
  // stops there). A constant image is shown at the low end; a huge ramp still spans the greys.
  const Geometry g = centred_grid({16, 16, 16}, {2, 2, 2});
  const Volume<float> constant = sample_physical(g, [](const Vec3d&) { return 1e30; });
  const Volume<float> ramp = sample_physical(g, [](const Vec3d& p) { return 1e36 * (p.x + 20.0); });
  const QcPicture pic = make_qc_picture(constant, ramp);
  int dark = 0, bright = 0;
  for (int y = 0; y < pic.height; ++y)
    for (int x = 0; x < pic.width; ++x) {
      dark += pic.at(x, y) == 0;
      bright += pic.at(x, y) == 255;
    }
  EXPECT_GT(dark, pic.width * pic.height / 3);  // the whole fixed row and the gaps
  EXPECT_GT(bright, 0);                         // the top of the ramp
}

TEST(QcPicture, WritesAPngThatItkReads) {
  const fs::path dir = fs::temp_directory_path() / ("gigareg_qc_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Geometry g = centred_grid({20, 30, 10}, {1, 1, 3});
  const Volume<float> f = sample_physical(g, corner_block);
  const std::string path = (dir / "qc.png").string();
  write_qc_picture(path, f, f);
  const QcPicture expected = make_qc_picture(f, f);

  using Image2 = itk::Image<unsigned char, 2>;
  auto reader = itk::ImageFileReader<Image2>::New();
  reader->SetFileName(path);
  reader->Update();
  const Image2* img = reader->GetOutput();
  ASSERT_EQ(int(img->GetLargestPossibleRegion().GetSize(0)), expected.width);
  ASSERT_EQ(int(img->GetLargestPossibleRegion().GetSize(1)), expected.height);
  for (int r = 0; r < expected.height; r += 7)
    for (int c = 0; c < expected.width; c += 5) EXPECT_EQ(img->GetPixel({{c, r}}), expected.at(c, r));

  // Bad names and mismatched grids: errors naming the problem, nothing written.
  const std::string bad = (dir / "qc.jpg").string();
  try {
    write_qc_picture(bad, f, f);
    FAIL() << "no error for a .jpg name";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), bad);
  }
  EXPECT_FALSE(fs::exists(bad));
  const Volume<float> other = sample_physical(centred_grid({20, 30, 11}, {1, 1, 3}), corner_block);
  EXPECT_THROW(make_qc_picture(f, other), Error);
  EXPECT_THROW(write_qc_picture((dir / "missing_dir" / "qc.png").string(), f, f), Error);
  for (const auto& entry : fs::directory_iterator(dir)) EXPECT_EQ(entry.path().filename(), "qc.png");
  fs::remove_all(dir);
}

// Issue 18, item 2: a QC picture written to a full disk (here: a file size limit, in a child
// process) ends with an error naming the file and leaves nothing, not a crash inside ITK's PNG
// writer (which freed memory it did not allocate) and a hidden temporary.
TEST(QcPictureDeathTest, FullDiskIsAnErrorAndLeavesNothing) {
  const fs::path dir = fs::temp_directory_path() / ("gigareg_qc_full_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  QcPicture pic;
  pic.width = 400;
  pic.height = 300;
  std::uint32_t x = 12345;
  for (int i = 0; i < pic.width * pic.height; ++i) {
    x = x * 1664525u + 1013904223u;  // noise: it does not compress below the limit
    pic.pixels.push_back(std::uint8_t(x >> 24));
  }
  const std::string path = (dir / "qc.png").string();
  auto child = [&] {
    std::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of a signal
    rlimit limit{};
    limit.rlim_cur = 20000;
    limit.rlim_max = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_png(path, pic);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::_Exit(std::string(e.what()).find(path) != std::string::npos ? 0 : 2);
    }
    std::_Exit(1);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
  EXPECT_TRUE(fs::is_empty(dir));
  // Without the limit the same picture is written.
  write_png(path, pic);
  EXPECT_TRUE(fs::exists(path));
  fs::remove_all(dir);
}
