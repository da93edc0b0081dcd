// The gigareg tool's field commands and the extra outputs of `gigareg register`, run as processes:
//  - jacobian: a linear displacement u(x) = B x has det(I + B) everywhere (oblique, anisotropic
//    grid, so spacing and direction matter); a folding one is counted as non-positive everywhere;
//  - invert: the inverse of u(x) = B x is w(x) = ((I + B)^-1 - I) x, and the residual is small;
//  - bad inputs: missing files and a scalar image given as a field give clear errors naming the
//    file, a non-zero exit and no output file;
//  - register: -v 0 leaves stderr empty, the progress display appears otherwise (log lines when
//    stderr is not a terminal, a bar redrawn with '\r' with --progress bar); the QC picture is a
//    PNG that ITK reads, of the size the library computes; --write-composite-transform 1 writes
//    Composite.h5 and InverseComposite.h5 that ITK reads back, and resampling through them with
//    ITK's ResampleImageFilter reproduces the warped and inverse-warped images.
//
// The tool is found through $GIGAREG_CLI, else the compile definition GIGAREG_CLI_PATH, else next
// to this test in the build tree (<build>/tools/gigareg); the tests skip when it is not built.
#include <gtest/gtest.h>

#include <itkAffineTransform.h>
#include <itkCompositeTransform.h>
#include <itkDisplacementFieldTransform.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkLinearInterpolateImageFunction.h>
#include <itkResampleImageFilter.h>
#include <itkTransformFileReader.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_test_util.hpp"
#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "gigareg/qc.hpp"
#include "test_util.hpp"

using namespace gigareg;
namespace fs = std::filesystem;

namespace {

using gigareg::test::cli_path;
using gigareg::test::quote;
using gigareg::test::slurp;
using gigareg::test::ToolRun;
ToolRun run(const std::string& args) { return gigareg::test::run_cli(args); }

Mat3d add(const Mat3d& a, const Mat3d& b) {
  Mat3d c;
  for (int i = 0; i < 9; ++i) c.m[i] = a.m[i] + b.m[i];
  return c;
}

double det3(const Mat3d& a) {
  return a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1)) - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0)) +
         a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0));
}

Mat3d inverse3(const Mat3d& a) {
  const double d = det3(a);
  Mat3d r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const int i1 = (j + 1) % 3, i2 = (j + 2) % 3, j1 = (i + 1) % 3, j2 = (i + 2) % 3;
      r(i, j) = (a(i1, j1) * a(i2, j2) - a(i1, j2) * a(i2, j1)) / d;
    }
  return r;
}

/// u(x) = B (x - c): a field whose Jacobian is I + B at every voxel.
DisplacementField linear_field(const Geometry& g, const Mat3d& b, const Vec3d& c) {
  DisplacementField u(g, 3);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d d = b * (g.index_to_physical({double(i), double(j), double(k)}) - c);
        for (int a = 0; a < 3; ++a) u(i, j, k, a) = float(d[a]);
      }
  return u;
}

Geometry field_grid() {
  return test::make_geometry({14, 12, 10}, {1.5, 2.0, 2.5}, {-10, -12, -12}, test::rotation(0.2, -0.1, 0.3));
}

Vec3d grid_centre(const Geometry& g) {
  return g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

/// A number printed after `label` in the tool's output (NaN when absent).
double number_after(const std::string& text, const std::string& label) {
  const std::size_t at = text.find(label);
  if (at == std::string::npos) return std::nan("");
  return std::strtod(text.c_str() + at + label.size(), nullptr);
}

class CliTools : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("gigareg_cli_tools_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!std::getenv("GIGAREG_KEEP_TEST_FILES")) fs::remove_all(dir);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  /// A small pair for registrations: smooth blobs, the moving image shifted and scaled a little.
  /// Both fall to about 0 well inside the grid.
  void make_pair() {
    const Geometry g = test::make_geometry({24, 26, 22}, {2, 2, 2}, {-24, -26, -22});
    Volume<float> f(g), m(g);
    const Vec3d c = grid_centre(g);
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const Vec3d p = g.index_to_physical({double(i), double(j), double(k)}) - c;
          auto blob = [](const Vec3d& q) {
            const double r2 = q.x * q.x / 90 + q.y * q.y / 110 + q.z * q.z / 70;
            return 100 * std::exp(-r2) + 60 * std::exp(-((q.x - 6) * (q.x - 6) + (q.y + 4) * (q.y + 4) + q.z * q.z) / 30);
          };
          f(i, j, k) = float(blob(p));
          m(i, j, k) = float(blob(Vec3d{0.97 * p.x - 2, 1.02 * p.y + 1.5, p.z - 1}));
        }
    fixed = path("fixed.nii.gz");
    moving = path("moving.nii.gz");
    write_image(fixed, f);
    write_image(moving, m);
  }

  /// A short affine + greedy registration in antsRegistration's grammar.
  std::string register_args(const std::string& prefix, const std::string& extra) const {
    const std::string pair = fixed + "," + moving;
    return "register -d 3 --device cpu -o [" + prefix + "," + prefix + "warped.nii.gz," + prefix +
           "inverse_warped.nii.gz] -r [" + pair + ",1] -t Affine[0.1] -m MeanSquares[" + pair +
           ",1] -c [20x10,1e-6,10] -f 2x1 -s 1x0vox -t Greedy[0.1,2,1] -m CC[" + pair +
           ",1,2] -c [10x5,1e-6,10] -f 2x1 -s 1x0vox " + extra;
  }

  fs::path dir;
  std::string fixed, moving;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// jacobian

TEST_F(CliTools, JacobianOfALinearFieldIsDetIPlusB) {
  REQUIRE_CLI();
  const Geometry g = field_grid();
  const Mat3d b{{0.10, -0.05, 0.02, 0.04, -0.08, 0.03, -0.02, 0.06, 0.12}};
  const double expected = det3(add(Mat3d::identity(), b));
  write_displacement_field(path("u.nii.gz"), linear_field(g, b, grid_centre(g)));

  const ToolRun r = run("jacobian -i " + path("u.nii.gz") + " -o " + path("jac.nii.gz") + " --device cpu");
  ASSERT_EQ(r.rc, 0) << r.all();
  const Image jac = read_image(path("jac.nii.gz"));
  EXPECT_EQ(jac.pixel_type, PixelType::Float32);
  EXPECT_TRUE(jac.voxels.geometry().equals(g, 1e-5));
  double worst = 0;
  for (index_t i = 0; i < jac.voxels.voxel_count(); ++i)
    worst = std::max(worst, std::abs(double(jac.voxels.data()[i]) - expected));
  EXPECT_LT(worst, 1e-4) << "det(I + B) = " << expected;
  EXPECT_NEAR(number_after(r.out, "min "), expected, 1e-4) << r.out;
  EXPECT_NEAR(number_after(r.out, "max "), expected, 1e-4) << r.out;
  EXPECT_NEAR(number_after(r.out, "mean "), expected, 1e-4) << r.out;
  EXPECT_EQ(number_after(r.out, "non-positive determinants: "), 0.0) << r.out;
  EXPECT_NE(r.out.find("fraction 0)"), std::string::npos) << r.out;

  // A folding map: det(I + B) = -0.5 everywhere; the output is optional.
  const Mat3d fold{{-1.5, 0, 0, 0, 0, 0, 0, 0, 0}};
  write_displacement_field(path("fold.nii.gz"), linear_field(g, fold, grid_centre(g)));
  const ToolRun f = run("jacobian -i " + path("fold.nii.gz") + " --device auto");
  ASSERT_EQ(f.rc, 0) << f.all();
  EXPECT_EQ(number_after(f.out, "non-positive determinants: "), double(g.voxel_count())) << f.out;
  EXPECT_NE(f.out.find("fraction 1)"), std::string::npos) << f.out;
  EXPECT_NEAR(number_after(f.out, "min "), -0.5, 1e-4) << f.out;
}

// ---------------------------------------------------------------------------------------------
// invert

TEST_F(CliTools, InverseOfALinearField) {
  REQUIRE_CLI();
  const Geometry g = field_grid();
  const Mat3d b{{0.08, 0.02, -0.03, -0.04, 0.05, 0.02, 0.03, -0.02, -0.06}};
  const Vec3d c = grid_centre(g);
  write_displacement_field(path("u.nii.gz"), linear_field(g, b, c));

  const ToolRun r = run("invert -i " + path("u.nii.gz") + " -o " + path("w.nii.gz") +
                        " --iterations 200 --tolerance 1e-4 --device cpu");
  ASSERT_EQ(r.rc, 0) << r.all();
  const double residual = number_after(r.out, "largest ");
  EXPECT_LT(residual, 1e-3) << r.out;
  // Percentiles over the voxels, in order; every voxel converged, so no warning.
  const double median = number_after(r.out, "median "), p99 = number_after(r.out, " 99% "),
               p999 = number_after(r.out, "99.9% ");
  EXPECT_LE(median, p99) << r.out;
  EXPECT_LE(p99, p999) << r.out;
  EXPECT_LE(p999, residual) << r.out;
  EXPECT_EQ(number_after(r.out, "voxels above the tolerance: "), 0.0) << r.out;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;

  // x + u(x) = c + (I + B)(x - c), so w(x) = ((I + B)^-1 - I)(x - c) wherever x + w(x) stays in
  // the grid (outside it u is extended by its edge values, no longer linear).
  const DisplacementField w = read_displacement_field(path("w.nii.gz"));
  ASSERT_TRUE(w.geometry().equals(g, 1e-5));
  const Mat3d inv = inverse3(add(Mat3d::identity(), b));
  const Mat3d expected_b = add(inv, Mat3d{{-1, 0, 0, 0, -1, 0, 0, 0, -1}});
  double worst = 0;
  index_t checked = 0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d x = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d e = expected_b * (x - c);
        const Vec3d y = g.physical_to_index(x + e);
        if (y.x < 0 || y.y < 0 || y.z < 0 || y.x > double(g.size.x - 1) || y.y > double(g.size.y - 1) ||
            y.z > double(g.size.z - 1))
          continue;
        ++checked;
        for (int a = 0; a < 3; ++a) worst = std::max(worst, std::abs(double(w(i, j, k, a)) - e[a]));
      }
  EXPECT_GT(checked, g.voxel_count() / 3);
  EXPECT_LT(worst, 1e-3) << "mm, over " << checked << " voxels";
}

TEST_F(CliTools, InvertReportsResidualPercentilesAndWarnsWhereItDoesNotConverge) {
  REQUIRE_CLI();
  // u(x) = a sin(k x_1) e_1 with a k = 1.57: x -> x + u(x) folds (d/dx_1 = 1 + a k cos < 0 where
  // cos < -0.64), so it has no inverse there, and neither the fixed-point iteration nor ITK's
  // damped inversion that redoes it converges there (the damped one does elsewhere: 4% of the
  // voxels stay above the tolerance, against more than 10% after the fixed point alone).
  const Geometry g = field_grid();
  DisplacementField u(g, 3);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d x = g.index_to_physical({double(i), double(j), double(k)});
        u(i, j, k, 0) = float(3.0 * std::sin(x.x / 1.91));
        u(i, j, k, 1) = u(i, j, k, 2) = 0.f;
      }
  write_displacement_field(path("u.nii.gz"), u);
  const ToolRun r = run("invert -i " + path("u.nii.gz") + " -o " + path("w.nii.gz") + " --iterations 20 --device cpu");
  ASSERT_EQ(r.rc, 0) << r.all();  // the inverse is still written: a warning, not an error
  EXPECT_TRUE(fs::exists(path("w.nii.gz")));
  const double above = number_after(r.out, "voxels above the tolerance: ");
  EXPECT_GT(above, 0.02 * double(g.voxel_count())) << r.out;
  EXPECT_NE(r.out.find("damped updates"), std::string::npos) << r.out;
  const double largest = number_after(r.out, "largest ");
  EXPECT_GT(largest, 0.5) << r.out;
  EXPECT_GE(largest, number_after(r.out, "99.9% ")) << r.out;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(path("w.nii.gz") + ": the inverse did not converge at " +
                       std::to_string((long long)above) + " voxels"),
            std::string::npos)
      << r.err;
}

// ---------------------------------------------------------------------------------------------
// bad inputs

TEST_F(CliTools, BadInputsGiveClearErrorsAndNoOutput) {
  REQUIRE_CLI();
  const Geometry g = field_grid();
  Volume<float> scalar(g);
  scalar.fill(1.0f);
  write_image(path("scalar.nii.gz"), scalar);
  const std::string missing = path("missing_warp.nii.gz");
  struct Case {
    std::string args, message, output;
  };
  const Case cases[] = {
      {"jacobian -i " + missing + " -o " + path("j1.nii.gz"), missing, path("j1.nii.gz")},
      {"jacobian -i " + path("scalar.nii.gz") + " -o " + path("j2.nii.gz"), path("scalar.nii.gz"), path("j2.nii.gz")},
      {"jacobian -i " + path("scalar.nii.gz") + " -o " + path("j3.nii.gz"), "not a 3-D displacement field", path("j3.nii.gz")},
      {"invert -i " + missing + " -o " + path("w1.nii.gz"), missing, path("w1.nii.gz")},
      {"invert -i " + path("scalar.nii.gz") + " -o " + path("w2.nii.gz"), path("scalar.nii.gz"), path("w2.nii.gz")},
      {"invert -i " + path("scalar.nii.gz"), "--output is required", ""},
      {"jacobian -o " + path("j4.nii.gz"), "--input is required", path("j4.nii.gz")},
      {"jacobian -i " + path("scalar.nii.gz") + " --device tpu", "cpu, cuda or auto", ""},
      {"invert -i " + missing + " -o " + path("w3.nii.gz") + " --tolerance -1", "--tolerance", path("w3.nii.gz")},
      {"register -o " + path("r_") + " --qc " + path("qc.jpg") + " --preset affine --fixed a.nii.gz --moving b.nii.gz",
       "give a name ending in .png", path("r_0GenericAffine.mat")},
      {"register -o " + path("r_") + " --progress fancy --preset affine --fixed a.nii.gz --moving b.nii.gz",
       "expected auto, bar or lines", path("r_0GenericAffine.mat")},
      {"register -o " + path("r_") + " -v 7 --preset affine --fixed a.nii.gz --moving b.nii.gz", "expected 0, 1 or 2",
       path("r_0GenericAffine.mat")},
      {"register -o " + path("r_") + " --write-composite-transform 2 --preset affine --fixed a.nii.gz --moving b.nii.gz",
       "expected 0 or 1", path("r_0GenericAffine.mat")},
  };
  for (const Case& c : cases) {
    const ToolRun r = run(c.args);
    EXPECT_NE(r.rc, 0) << c.args << "\n" << r.all();
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.all();
    if (!c.output.empty()) {
      EXPECT_FALSE(fs::exists(c.output)) << c.args;
    }
  }
  // Nothing else appeared in the directory (no temporaries left behind either).
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "scalar.nii.gz");
}

TEST(CliToolsHelp, HelpDocumentsEveryOption) {
  REQUIRE_CLI();
  const ToolRun top = run("--help");
  EXPECT_EQ(top.rc, 0);
  for (const char* cmd : {"jacobian", "invert", "register", "apply", "info", "demo"})
    EXPECT_NE(top.all().find(cmd), std::string::npos) << cmd;
  const ToolRun j = run("jacobian --help");
  EXPECT_EQ(j.rc, 0) << j.all();
  for (const char* opt : {"-i,--input", "-o,--output", "--device"}) EXPECT_NE(j.all().find(opt), std::string::npos) << opt;
  const ToolRun i = run("invert --help");
  EXPECT_EQ(i.rc, 0) << i.all();
  for (const char* opt : {"-i,--input", "-o,--output", "--iterations", "--tolerance", "--device"})
    EXPECT_NE(i.all().find(opt), std::string::npos) << opt;
  const ToolRun r = run("register --help");
  EXPECT_EQ(r.rc, 0) << r.all();
  for (const char* opt : {"--qc", "--no-qc", "--progress", "--write-composite-transform", "-v,--verbose"})
    EXPECT_NE(r.all().find(opt), std::string::npos) << opt;
}

// ---------------------------------------------------------------------------------------------
// register: stderr, progress, QC picture, composite transforms

TEST_F(CliTools, RegisterQuietProgressAndQcPicture) {
  REQUIRE_CLI();
  make_pair();
  // -v 0: nothing on stderr; the QC picture is written beside the outputs by default.
  const std::string p0 = path("quiet/reg_");
  const ToolRun quiet = run(register_args(p0, "-v 0"));
  ASSERT_EQ(quiet.rc, 0) << quiet.all();
  EXPECT_EQ(quiet.err, "");
  const std::string qc = p0 + "QC.png";
  ASSERT_TRUE(fs::exists(qc)) << quiet.out;
  EXPECT_NE(quiet.out.find(qc), std::string::npos) << quiet.out;  // named in the summary

  // ITK reads it, and its size is the library's mosaic of these images: 3 tiles of 48 x 52 x 44 mm
  // at 2 mm per pixel across (24 + 24 + 26 + 2 gaps), 3 rows of the tallest tile (26 + 2 gaps).
  using Image2 = itk::Image<unsigned char, 2>;
  auto reader = itk::ImageFileReader<Image2>::New();
  reader->SetFileName(qc);
  reader->Update();
  const auto size = reader->GetOutput()->GetLargestPossibleRegion().GetSize();
  EXPECT_EQ(size[0], 24u + 24u + 26u + 8u);
  EXPECT_EQ(size[1], 3u * 26u + 8u);
  const QcPicture expected = make_qc_picture(read_image(fixed).voxels, read_image(p0 + "warped.nii.gz").voxels);
  EXPECT_EQ(int(size[0]), expected.width);
  EXPECT_EQ(int(size[1]), expected.height);

  // Default (stderr is a file, not a terminal): one line per level, no carriage returns.
  const ToolRun lines = run(register_args(path("lines/reg_"), "--qc " + path("lines/picture.png")));
  ASSERT_EQ(lines.rc, 0) << lines.all();
  EXPECT_NE(lines.err.find("stage 1/2 Affine MeanSquares level 1/2: 20/20 iterations"), std::string::npos) << lines.err;
  EXPECT_NE(lines.err.find("stage 2/2 Greedy CC level 2/2: "), std::string::npos) << lines.err;
  EXPECT_EQ(lines.err.find('\r'), std::string::npos) << lines.err;
  EXPECT_TRUE(fs::exists(path("lines/picture.png")));
  EXPECT_FALSE(fs::exists(path("lines/reg_QC.png")));

  // --progress bar: redrawn in place with '\r', each level left complete on its own line.
  const ToolRun bar = run(register_args(path("bar/reg_"), "--progress bar --no-qc"));
  ASSERT_EQ(bar.rc, 0) << bar.all();
  EXPECT_NE(bar.err.find('\r'), std::string::npos) << bar.err;
  EXPECT_NE(bar.err.find("stage 1/2 Affine MeanSquares level 1/2 [####################] 20/20"), std::string::npos)
      << bar.err;
  EXPECT_NE(bar.err.find("stage 2/2 Greedy CC level 2/2 [####################]"), std::string::npos) << bar.err;
  EXPECT_FALSE(fs::exists(path("bar/reg_QC.png")));
}

TEST_F(CliTools, RegisterWarnsWhenTheWarpFolds) {
  REQUIRE_CLI();
  make_pair();
  // A moderate greedy stage: no folds, the summary says so and nothing warns.
  const std::string p0 = path("smooth/reg_");
  const ToolRun smooth = run(register_args(p0, "--no-qc"));
  ASSERT_EQ(smooth.rc, 0) << smooth.all();
  EXPECT_NE(smooth.out.find("warp: non-positive Jacobian determinant at 0 voxels (fraction 0)"), std::string::npos)
      << smooth.out;
  EXPECT_EQ(smooth.err.find("warning"), std::string::npos) << smooth.err;

  // Steps of 2 voxels without any smoothing fold the warp: a warning naming the file and the
  // fraction, and the same count as `gigareg jacobian` finds in the written warp.
  const std::string pair = fixed + "," + moving, p1 = path("fold/reg_");
  const ToolRun fold = run("register -d 3 --device cpu --no-qc -o " + p1 + " -r [" + pair +
                           ",1] -t Affine[0.1] -m MeanSquares[" + pair + ",1] -c [20x10,1e-6,10] -f 2x1 -s 1x0vox "
                           "-t Greedy[2,0,0] -m CC[" + pair + ",1,2] -c [10x5,1e-6,10] -f 2x1 -s 1x0vox");
  ASSERT_EQ(fold.rc, 0) << fold.all();
  const ToolRun jac = run("jacobian -i " + p1 + "1Warp.nii.gz --device cpu");
  ASSERT_EQ(jac.rc, 0) << jac.all();
  const double folds = number_after(jac.out, "non-positive determinants: ");
  ASSERT_GT(folds, 0.0) << jac.out;
  EXPECT_NE(fold.err.find("gigareg: warning: " + p1 + "1Warp.nii.gz folds: non-positive Jacobian determinant at " +
                          std::to_string((long long)folds) + " of "),
            std::string::npos)
      << fold.err;
  EXPECT_EQ(number_after(fold.out, "warp: non-positive Jacobian determinant at "), folds) << fold.out;
  // -v 0: errors only, so the warning is not printed (stderr stays empty).
  const ToolRun quiet = run("register -v 0 -d 3 --device cpu --no-qc -o " + path("quiet/reg_") + " -r [" + pair +
                            ",1] -t Greedy[2,0,0] -m CC[" + pair + ",1,2] -c [10x5,1e-6,10] -f 2x1 -s 1x0vox");
  ASSERT_EQ(quiet.rc, 0) << quiet.all();
  EXPECT_EQ(quiet.err, "");
}

TEST_F(CliTools, CompositeTransformsReproduceTheWarpedImages) {
  REQUIRE_CLI();
  make_pair();
  const std::string p = path("out/reg_");
  const ToolRun r = run(register_args(p, "-v 0 --no-qc --write-composite-transform 1"));
  ASSERT_EQ(r.rc, 0) << r.all();
  ASSERT_TRUE(fs::exists(p + "Composite.h5")) << r.out;
  ASSERT_TRUE(fs::exists(p + "InverseComposite.h5")) << r.out;

  register_itk_io_factories();
  using Composite = itk::CompositeTransform<double, 3>;
  auto read_composite = [](const std::string& file) {
    auto reader = itk::TransformFileReaderTemplate<double>::New();
    reader->SetFileName(file);
    reader->Update();
    EXPECT_EQ(reader->GetTransformList()->size(), 1u);
    Composite::Pointer c = dynamic_cast<Composite*>(reader->GetTransformList()->front().GetPointer());
    return c;
  };
  using FloatImage = itk::Image<float, 3>;
  auto read = [](const std::string& file) {
    auto reader = itk::ImageFileReader<FloatImage>::New();
    reader->SetFileName(file);
    reader->Update();
    FloatImage::Pointer image = reader->GetOutput();
    return image;
  };
  auto resample = [](FloatImage* input, FloatImage* reference, Composite* transform) {
    auto filter = itk::ResampleImageFilter<FloatImage, FloatImage, double>::New();
    filter->SetInput(input);
    filter->SetReferenceImage(reference);
    filter->UseReferenceImageOn();
    filter->SetTransform(transform);
    filter->SetInterpolator(itk::LinearInterpolateImageFunction<FloatImage, double>::New());
    filter->SetDefaultPixelValue(0);
    filter->Update();
    FloatImage::Pointer out = filter->GetOutput();
    return out;
  };
  auto mean_abs_diff_of_range = [](FloatImage* a, const Volume<float>& b) {
    const Volume<float> va = wrap_itk_image(a);
    EXPECT_EQ(va.voxel_count(), b.voxel_count());
    double diff = 0, lo = 1e30, hi = -1e30;
    for (index_t i = 0; i < b.voxel_count(); ++i) {
      diff += std::abs(double(va.data()[i]) - b.data()[i]);
      lo = std::min(lo, double(b.data()[i]));
      hi = std::max(hi, double(b.data()[i]));
    }
    return diff / double(b.voxel_count()) / (hi - lo);
  };

  // Forward: [affine, warp], ITK applies the warp first: x -> A(x + u(x)).
  const Composite::Pointer forward = read_composite(p + "Composite.h5");
  ASSERT_TRUE(forward);
  ASSERT_EQ(forward->GetNumberOfTransforms(), 2u);
  EXPECT_STREQ(forward->GetNthTransformConstPointer(0)->GetNameOfClass(), "AffineTransform");
  EXPECT_STREQ(forward->GetNthTransformConstPointer(1)->GetNameOfClass(), "DisplacementFieldTransform");
  const FloatImage::Pointer f = read(fixed), m = read(moving);
  const FloatImage::Pointer warped_itk = resample(m, f, forward);
  const double forward_error = mean_abs_diff_of_range(warped_itk, read_image(p + "warped.nii.gz").voxels);
  std::printf("  ITK through Composite.h5 vs gigareg's warped image: mean |diff| %.2e of the range\n", forward_error);
  EXPECT_LT(forward_error, 1e-3);
  // ...and exactly what ITK computes through the pair prefix0GenericAffine.mat + prefix1Warp.nii.gz.
  auto affine_reader = itk::TransformFileReaderTemplate<double>::New();
  affine_reader->SetFileName(p + "0GenericAffine.mat");
  affine_reader->Update();
  using VectorImage = itk::Image<itk::Vector<double, 3>, 3>;
  auto field_reader = itk::ImageFileReader<VectorImage>::New();
  field_reader->SetFileName(p + "1Warp.nii.gz");
  field_reader->Update();
  auto field = itk::DisplacementFieldTransform<double, 3>::New();
  field->SetDisplacementField(field_reader->GetOutput());
  auto pair = Composite::New();
  pair->AddTransform(dynamic_cast<itk::Transform<double, 3, 3>*>(affine_reader->GetTransformList()->front().GetPointer()));
  pair->AddTransform(field);
  const FloatImage::Pointer pair_itk = resample(m, f, pair);
  double largest = 0;
  for (itk::SizeValueType i = 0; i < pair_itk->GetPixelContainer()->Size(); ++i)
    largest = std::max(largest, double(std::abs(pair_itk->GetBufferPointer()[i] - warped_itk->GetBufferPointer()[i])));
  EXPECT_LT(largest, 1e-4) << "ITK through Composite.h5 vs through the .mat and the warp";

  // Inverse: [inverse warp, A^-1], ITK applies A^-1 first: the fixed image into the moving grid.
  const Composite::Pointer inverse = read_composite(p + "InverseComposite.h5");
  ASSERT_TRUE(inverse);
  ASSERT_EQ(inverse->GetNumberOfTransforms(), 2u);
  EXPECT_STREQ(inverse->GetNthTransformConstPointer(0)->GetNameOfClass(), "DisplacementFieldTransform");
  EXPECT_STREQ(inverse->GetNthTransformConstPointer(1)->GetNameOfClass(), "AffineTransform");
  const FloatImage::Pointer back_itk = resample(f, m, inverse);
  const double inverse_error = mean_abs_diff_of_range(back_itk, read_image(p + "inverse_warped.nii.gz").voxels);
  std::printf("  ITK through InverseComposite.h5 vs gigareg's inverse warped image: mean |diff| %.2e of the range\n",
              inverse_error);
  EXPECT_LT(inverse_error, 1e-3);

  // gigareg apply reads the composites as one -t each: bitwise what the separate files give.
  auto apply = [&](const std::string& out, const std::string& input, const std::string& ref,
                   const std::string& transforms) {
    const ToolRun a = run("apply -i " + input + " -r " + ref + " -o " + out + " " + transforms);
    EXPECT_EQ(a.rc, 0) << a.all();
    return read_image(out).voxels;
  };
  const Volume<float> via_composite = apply(path("out/a_composite.nii.gz"), moving, fixed, "-t " + p + "Composite.h5");
  const Volume<float> via_files = apply(path("out/a_files.nii.gz"), moving, fixed,
                                        "-t " + p + "1Warp.nii.gz -t " + p + "0GenericAffine.mat");
  ASSERT_EQ(via_composite.bytes(), via_files.bytes());
  EXPECT_EQ(std::memcmp(via_composite.data(), via_files.data(), via_files.bytes()), 0);
  const Volume<float> back_composite =
      apply(path("out/b_composite.nii.gz"), fixed, moving, "-t " + p + "InverseComposite.h5");
  const Volume<float> back_files = apply(path("out/b_files.nii.gz"), fixed, moving,
                                         "-t [" + p + "0GenericAffine.mat,1] -t " + p + "1InverseWarp.nii.gz");
  ASSERT_EQ(back_composite.bytes(), back_files.bytes());
  EXPECT_EQ(std::memcmp(back_composite.data(), back_files.data(), back_files.bytes()), 0);
  // A composite holding a field cannot be inverted on the fly: a clear error, no output.
  const ToolRun bad = run("apply -i " + moving + " -r " + fixed + " -o " + path("out/bad.nii.gz") +
                          " -t [" + p + "Composite.h5,1]");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("Composite.h5"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("InverseComposite.h5"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(path("out/bad.nii.gz")));
}

// ---------------------------------------------------------------------------------------------
// apply: a warp evaluated beyond its grid

TEST_F(CliTools, ApplyOntoAGridLargerThanTheWarpMatchesItk) {
  REQUIRE_CLI();
  // The warp: a small oblique grid, displacements of 2-6 mm, so that ITK's rule beyond its grid
  // (zero displacement) and carrying the edge value outwards differ by millimetres.
  const Geometry wg = test::make_geometry({12, 11, 10}, {2.0, 2.2, 2.5}, {0, 0, 0}, test::rotation(0.15, -0.2, 0.1));
  DisplacementField u(wg, 3);
  for (index_t k = 0; k < wg.size.z; ++k)
    for (index_t j = 0; j < wg.size.y; ++j)
      for (index_t i = 0; i < wg.size.x; ++i) {
        u(i, j, k, 0) = float(4.0 + 1.5 * std::sin(0.6 * double(i) + 0.2 * double(k)));
        u(i, j, k, 1) = float(-3.0 + std::cos(0.5 * double(j) - 0.3 * double(i)));
        u(i, j, k, 2) = float(2.5 + std::sin(0.4 * double(k)) * std::cos(0.3 * double(j)));
      }
  // The reference grid reaches about 10 mm beyond the warp's on every side, the moving image's
  // 15 mm beyond the reference's (every sample lands well inside it: only the warp's edge counts).
  auto centred = [](Geometry g, const Vec3d& at) {
    const Vec3d c = g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
    g.origin = g.origin + (at - c);
    return g;
  };
  const Vec3d centre = grid_centre(wg);
  const Geometry rg = centred(test::make_geometry({31, 32, 33}, {1.5, 1.5, 1.5}, {0, 0, 0}, test::rotation(-0.1, 0.05, 0.2)), centre);
  const Geometry mg = centred(test::make_geometry({64, 64, 64}, {1.2, 1.2, 1.2}), centre);
  Volume<float> m(mg), r(rg);
  for (index_t k = 0; k < mg.size.z; ++k)
    for (index_t j = 0; j < mg.size.y; ++j)
      for (index_t i = 0; i < mg.size.x; ++i) {
        const Vec3d p = mg.index_to_physical({double(i), double(j), double(k)}) - centre;
        m(i, j, k) = float(500 + 200 * std::sin(0.25 * p.x + 0.1 * p.z) + 150 * std::cos(0.2 * p.y - 0.15 * p.x));
      }
  r.fill(0.f);
  write_displacement_field(path("warp.nii.gz"), u);
  write_image(path("moving.nii.gz"), m);
  write_image(path("reference.nii.gz"), r);
  const ToolRun a = run("apply -i " + path("moving.nii.gz") + " -r " + path("reference.nii.gz") + " -o " +
                        path("out.nii.gz") + " -t " + path("warp.nii.gz"));
  ASSERT_EQ(a.rc, 0) << a.all();
  const Volume<float> ours = read_image(path("out.nii.gz")).voxels;

  // ITK, as antsApplyTransforms: the warp file read as a vector image of doubles, applied by a
  // DisplacementFieldTransform, the moving image resampled linearly.
  register_itk_io_factories();
  using FloatImage = itk::Image<float, 3>;
  using VectorImage = itk::Image<itk::Vector<double, 3>, 3>;
  auto field_reader = itk::ImageFileReader<VectorImage>::New();
  field_reader->SetFileName(path("warp.nii.gz"));
  field_reader->Update();
  auto transform = itk::DisplacementFieldTransform<double, 3>::New();
  transform->SetDisplacementField(field_reader->GetOutput());
  auto image_reader = itk::ImageFileReader<FloatImage>::New();
  image_reader->SetFileName(path("moving.nii.gz"));
  auto reference_reader = itk::ImageFileReader<FloatImage>::New();
  reference_reader->SetFileName(path("reference.nii.gz"));
  reference_reader->Update();
  auto filter = itk::ResampleImageFilter<FloatImage, FloatImage, double>::New();
  filter->SetInput(image_reader->GetOutput());
  filter->SetReferenceImage(reference_reader->GetOutput());
  filter->UseReferenceImageOn();
  filter->SetTransform(transform);
  filter->SetInterpolator(itk::LinearInterpolateImageFunction<FloatImage, double>::New());
  filter->Update();
  const FloatImage* itk_out = filter->GetOutput();

  double lo = 1e30, hi = -1e30;
  for (index_t i = 0; i < m.voxel_count(); ++i) {
    lo = std::min(lo, double(m.data()[i]));
    hi = std::max(hi, double(m.data()[i]));
  }
  index_t outside = 0, compared = 0;
  double worst = 0, worst_outside = 0;
  for (index_t k = 0; k < rg.size.z; ++k)
    for (index_t j = 0; j < rg.size.y; ++j)
      for (index_t i = 0; i < rg.size.x; ++i) {
        const Vec3d p = wg.physical_to_index(rg.index_to_physical({double(i), double(j), double(k)}));
        bool beyond = false, at_edge = false;  // at_edge: within 1e-3 voxel of ITK's buffer edge
        for (int c = 0; c < 3; ++c) {
          const double n = double(wg.size[c]);
          beyond = beyond || p[c] < -0.5 || p[c] >= n - 0.5;
          at_edge = at_edge || std::abs(p[c] + 0.5) < 1e-3 || std::abs(p[c] - (n - 0.5)) < 1e-3;
        }
        if (at_edge) continue;
        const double d = std::abs(double(ours(i, j, k)) - double(itk_out->GetPixel({{i, j, k}})));
        worst = std::max(worst, d);
        if (beyond) {
          ++outside;
          worst_outside = std::max(worst_outside, d);
        }
        ++compared;
      }
  std::printf("  %lld voxels compared, %lld beyond the warp's grid; largest |diff| %.3g (%.3g beyond) of range %.4g\n",
              (long long)compared, (long long)outside, worst, worst_outside, hi - lo);
  EXPECT_GT(outside, compared / 3);
  EXPECT_LE(worst, 1e-4 * (hi - lo));
}

// ---------------------------------------------------------------------------------------------
// phantom

TEST_F(CliTools, PhantomIsTheSourceUpsampledAndSampledThroughItsTruthFiles) {
  REQUIRE_CLI();
  make_pair();
  const Image source = read_image(fixed);
  const Geometry& sg = source.voxels.geometry();
  const std::string p = path("ph/a_");
  const ToolRun r = run("phantom -i " + fixed + " -o " + p + " --upsample 3 --remap none --pixel-type float32");
  ASSERT_EQ(r.rc, 0) << r.all();
  const Image f = read_image(p + "fixed.nii"), m = read_image(p + "moving.nii");
  const Geometry& fg = f.voxels.geometry();
  // Three voxels per source voxel over the same extent: spacing / 3 (stored as float32 by NIfTI),
  // the same grid centre.
  EXPECT_EQ(fg.size, (Index3{3 * sg.size.x, 3 * sg.size.y, 3 * sg.size.z}));
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(fg.spacing[a], sg.spacing[a] / 3, 1e-6);
  const Vec3d cs = grid_centre(sg), cf = grid_centre(fg);
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(cf[a], cs[a], 1e-4);
  EXPECT_TRUE(m.voxels.geometry().equals(fg));
  // The fixed image is the trilinear upsampling: the middle fine voxel of each source voxel is
  // at its centre, so it has the source value (up to the spacing's float rounding).
  for (index_t k = 0; k < sg.size.z; k += 5)
    for (index_t j = 0; j < sg.size.y; j += 3)
      for (index_t i = 0; i < sg.size.x; i += 2)
        ASSERT_NEAR(f.voxels(3 * i + 1, 3 * j + 1, 3 * k + 1), source.voxels(i, j, k), 1e-3);
  // The moving image is the source through the truth files (apply: warp first, then the affine),
  // on the fixed file's grid: equal to 1e-5 of the range (the file's float32 spacing against the
  // exact one the tool used).
  const std::string check = path("ph/check.nii");
  const ToolRun a = run("apply -i " + fixed + " -r " + p + "fixed.nii -o " + check + " -t " + p +
                        "truth_1Warp.nii.gz -t " + p + "truth_0GenericAffine.mat");
  ASSERT_EQ(a.rc, 0) << a.all();
  const Volume<float> via_truth = read_image(check).voxels;
  ASSERT_EQ(via_truth.voxel_count(), m.voxels.voxel_count());
  double largest = 0, lo = 1e30, hi = -1e30;
  for (index_t n = 0; n < m.voxels.voxel_count(); ++n) {
    largest = std::max(largest, double(std::abs(via_truth.data()[n] - m.voxels.data()[n])));
    lo = std::min(lo, double(m.voxels.data()[n]));
    hi = std::max(hi, double(m.voxels.data()[n]));
  }
  EXPECT_LT(largest, 1e-5 * (hi - lo));
  // ...and it differs from the fixed image (the transform is not the identity).
  double diff = 0;
  for (index_t n = 0; n < m.voxels.voxel_count(); ++n) diff += std::abs(m.voxels.data()[n] - f.voxels.data()[n]);
  EXPECT_GT(diff / double(m.voxels.voxel_count()), 1.0);
}

TEST_F(CliTools, PhantomMultimodalRemapAndBadOptions) {
  REQUIRE_CLI();
  make_pair();
  const std::string p = path("ph/b_");
  // No warp, no affine, upsample 1: the moving image is the remapped source, a non-monotonic
  // map of it (dark and bright both end up darker than the middle of the range).
  ASSERT_EQ(run("phantom -i " + fixed + " -o " + p + " --warp-mm 0 --affine 0 --pixel-type float32").rc, 0);
  const Volume<float> f = read_image(p + "fixed.nii").voxels, m = read_image(p + "moving.nii").voxels;
  float lo = f.data()[0], hi = lo;
  for (index_t n = 0; n < f.voxel_count(); ++n) {
    lo = std::min(lo, f.data()[n]);
    hi = std::max(hi, f.data()[n]);
  }
  const double range = hi - lo;
  int darkest = 0, brightest = 0, middle = -1;
  for (index_t n = 0; n < f.voxel_count(); ++n) {
    if (f.data()[n] < f.data()[darkest]) darkest = int(n);
    if (f.data()[n] > f.data()[brightest]) brightest = int(n);
    if (middle < 0 && std::abs((f.data()[n] - lo) / range - 0.45) < 0.02) middle = int(n);
  }
  ASSERT_GE(middle, 0);
  EXPECT_GT(m.data()[darkest], m.data()[brightest]);  // inverted contrast...
  EXPECT_GT(m.data()[middle], m.data()[brightest]);   // ...with a bump in the middle
  for (index_t n = 0; n < m.voxel_count(); ++n) {
    ASSERT_GE(m.data()[n], lo - 1e-3 * range);
    ASSERT_LE(m.data()[n], hi + 1e-3 * range);
  }
  // Bad options: a clear error and nothing written.
  const ToolRun bad = run("phantom -i " + fixed + " -o " + path("ph/c_") + " --upsample 0");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("--upsample"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(path("ph/c_fixed.nii")));
  const ToolRun missing = run("phantom -i " + path("nope.nii.gz") + " -o " + path("ph/d_"));
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("nope.nii.gz"), std::string::npos) << missing.err;
}
