// The gigareg tool's register and apply subcommands, run as processes: --help documents the
// options, bad options and bad files end with a clear message and a non-zero exit, and a small
// registration in antsRegistration's grammar writes files that `gigareg apply` (antsApplyTransforms'
// grammar) turns back into the warped image.
//
// The tool is found through $GIGAREG_CLI, else the compile definition GIGAREG_CLI_PATH (when the
// build sets it), else next to this test in the build tree (<build>/tools/gigareg); the tests
// skip with a message when it is not built.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "cli_test_util.hpp"
#include "gigareg/io.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"

using namespace gigareg;
namespace fs = std::filesystem;

namespace {

using gigareg::test::cli_path;
using gigareg::test::quote;
using gigareg::test::ToolRun;
ToolRun run(const std::string& args) { return gigareg::test::run_cli(args); }

/// A small head-like phantom: blobs in an ellipsoid, 0 near the borders.
Volume<float> phantom(const Geometry& g, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-0.7, 0.7), amp(-50, 100), size(2.5, 5.0);
  struct Blob { Vec3d p; double s, a; };
  std::vector<Blob> blobs;
  const BoundingBox bb = g.physical_bounds();
  const Vec3d c = 0.5 * (bb.min + bb.max), half = 0.5 * (bb.max - bb.min);
  for (int b = 0; b < 60; ++b)
    blobs.push_back({Vec3d{c.x + unit(rng) * 0.5 * half.x, c.y + unit(rng) * 0.5 * half.y, c.z + unit(rng) * 0.5 * half.z},
                     size(rng), amp(rng)});
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d p = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d q{(p.x - c.x) / (0.7 * half.x), (p.y - c.y) / (0.7 * half.y), (p.z - c.z) / (0.7 * half.z)};
        const double env = 1.0 / (1.0 + std::exp((std::sqrt(dot(q, q)) - 1.0) / 0.05));
        double s = 100;
        for (const Blob& b : blobs) {
          const Vec3d d = p - b.p;
          s += b.a * std::exp(-dot(d, d) / (2 * b.s * b.s));
        }
        v(i, j, k) = float(env * std::max(0.0, s));
      }
  return v;
}

class CliFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("gigareg_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    Geometry g;
    g.size = {32, 36, 30};
    g.spacing = {2, 2, 2};
    g.origin = {-32, -36, -30};
    const Volume<float> f = phantom(g, 4);
    const Vec3d centre = g.index_to_physical({15.5, 17.5, 14.5});
    const Affined a = make_affine({3, -2, 4}, {1.02, 1, 0.98}, {2, -1.5, 1}, centre);
    WarpInputs in;
    in.moving = f.view();
    in.moving_geometry = g;
    in.fixed_geometry = g;
    in.affine = a;
    Volume<float> m(g);
    warp(Context::cpu(), in, m.view(), Box{{0, 0, 0}, g.size});
    fixed = (dir / "fixed.nii.gz").string();
    moving = (dir / "moving.nii.gz").string();
    write_image(fixed, f);
    write_image(moving, m);
  }
  void TearDown() override {
    if (!std::getenv("GIGAREG_KEEP_TEST_FILES")) fs::remove_all(dir);
  }

  fs::path dir;
  std::string fixed, moving;
};

}  // namespace

TEST(Cli, HelpDocumentsEveryOption) {
  REQUIRE_CLI();
  const ToolRun r = run("register --help");
  EXPECT_EQ(r.rc, 0) << r.all();
  for (const char* opt : {"-d,--dimensionality", "-o,--output", "-r,--initial-moving-transform", "-t,--transform",
                          "-m,--metric", "-c,--convergence", "-f,--shrink-factors", "-s,--smoothing-sigmas",
                          "-x,--masks", "--preset", "--device", "-v,--verbose", "--field-optimizer"})
    EXPECT_NE(r.all().find(opt), std::string::npos) << opt;
  const ToolRun a = run("apply --help");
  EXPECT_EQ(a.rc, 0) << a.all();
  for (const char* opt : {"-i,--input", "-r,--reference-image", "-o,--output", "-t,--transform", "-n,--interpolation"})
    EXPECT_NE(a.all().find(opt), std::string::npos) << opt;
}

TEST(Cli, BadOptionsGiveClearErrorsAndNonZeroExits) {
  REQUIRE_CLI();
  struct Case {
    const char* args;
    const char* message;  // expected in the output
  };
  const Case cases[] = {
      {"register -o out/ --bogus", "bogus"},
      {"register -t Affine[0.1]", "an output prefix is required"},
      {"register -o out/", "no stage given"},
      {"register -o out/ -t Foo[1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "unknown transform 'Foo'"},
      {"register -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c [10x5,1e-6,5] -f 2 -s 1x0vox", "must agree"},
      {"register -o out/ -t Affine[0.1] -t Rigid[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "given 1 times for 2 stage(s)"},
      {"register -o out/ -t Affine[0.1] -m Demons[a,b,1,2] -c 10 -f 1 -s 0", "unknown metric"},
      {"register -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c [10,abc,5] -f 1 -s 0", "not a number"},
      {"register -o out/ -t Affine[0.1] extra -m CC[a,b,1,2] -c 10 -f 1 -s 0", "extra"},
      {"register -d 2 -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "only 3-D"},
      {"register -o out/ --device tpu -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "cpu, cuda or auto"},
      {"register -o out/ --preset bspline -f a.nii.gz -m b.nii.gz", "unknown preset"},
      {"register -o out/ -t Affine[0.1] -m CC[/nonexistent/f.nii.gz,/nonexistent/m.nii.gz,1,2] -c 10 -f 1 -s 0",
       "/nonexistent/f.nii.gz"},
      {"apply -r a.nii.gz -o b.nii.gz", "--input is required"},
      {"apply -i /nonexistent/i.nii.gz -r /nonexistent/r.nii.gz -o b.nii.gz", "/nonexistent/i.nii.gz"},
      {"apply -i a -r b -o c -n BSpline[2]", "only cubic B-splines"},
      {"apply -i a -r b -o c -n Gaussian", "unsupported interpolation"},
  };
  for (const Case& c : cases) {
    const ToolRun r = run(c.args);
    EXPECT_NE(r.rc, 0) << c.args << "\n" << r.all();
    EXPECT_NE(r.all().find(c.message), std::string::npos) << c.args << "\n" << r.all();
  }
}

TEST_F(CliFiles, RegisterThenApplyReproducesTheWarpedImage) {
  REQUIRE_CLI();
  const std::string p = (dir / "out" / "reg_").string();
  const std::string warped = (dir / "out" / "warped.nii.gz").string();
  const std::string inverse_warped = (dir / "out" / "inverse_warped.nii.gz").string();
  const std::string pair = fixed + "," + moving;
  const ToolRun r = run("register -d 3 --device cpu -o [" + p + "," + warped + "," + inverse_warped + "] -r [" + pair +
                    ",1] -t Affine[0.1] -m MeanSquares[" + pair + ",1] -c [40x30x20,1e-6,10] -f 4x2x1 -s 2x1x0vox " +
                    "-t Greedy[0.1,2,1] -m CC[" + pair + ",1,2] -c [20x10,1e-6,10] -f 2x1 -s 1x0vox");
  ASSERT_EQ(r.rc, 0) << r.all();
  for (const std::string& f : {p + "0GenericAffine.mat", p + "1Warp.nii.gz", p + "1InverseWarp.nii.gz", warped, inverse_warped})
    EXPECT_TRUE(fs::exists(f)) << f << "\n" << r.all();

  const std::string applied = (dir / "applied.nii.gz").string();
  const ToolRun a = run("apply -d 3 -i " + moving + " -r " + fixed + " -o " + applied + " -t " + p + "1Warp.nii.gz -t " + p +
                    "0GenericAffine.mat -n Linear");
  ASSERT_EQ(a.rc, 0) << a.all();
  const Image w = read_image(warped), ap = read_image(applied), f = read_image(fixed), m = read_image(moving);
  double diff = 0, before = 0, after = 0, lo = 1e30, hi = -1e30;
  for (index_t i = 0; i < w.voxels.voxel_count(); ++i) {
    diff += std::abs(double(w.voxels.data()[i]) - ap.voxels.data()[i]);
    before += std::abs(double(f.voxels.data()[i]) - m.voxels.data()[i]);
    after += std::abs(double(f.voxels.data()[i]) - w.voxels.data()[i]);
    lo = std::min(lo, double(w.voxels.data()[i]));
    hi = std::max(hi, double(w.voxels.data()[i]));
  }
  const double n = double(w.voxels.voxel_count());
  std::printf("  gigareg apply vs register's warped image: mean |diff| %.2e of the range; "
              "mean |fixed - moving| %.2f -> %.2f\n", diff / n / (hi - lo), before / n, after / n);
  EXPECT_LT(diff / n, 1e-5 * (hi - lo));
  EXPECT_LT(after, 0.5 * before);

  // The inverse direction: the fixed image into the moving grid, as antsApplyTransforms does it.
  const std::string back = (dir / "back.nii.gz").string();
  const ToolRun b = run("apply -i " + fixed + " -r " + moving + " -o " + back + " -t [" + p + "0GenericAffine.mat,1] -t " + p +
                    "1InverseWarp.nii.gz");
  ASSERT_EQ(b.rc, 0) << b.all();
  const Image iw = read_image(inverse_warped), bk = read_image(back);
  double d2 = 0;
  for (index_t i = 0; i < iw.voxels.voxel_count(); ++i) d2 += std::abs(double(iw.voxels.data()[i]) - bk.voxels.data()[i]);
  EXPECT_LT(d2 / n, 1e-5 * (hi - lo));

  // Labels keep their type and values with GenericLabel.
  const std::string labels = (dir / "labels.nii.gz").string(), labels_out = (dir / "labels_out.nii.gz").string();
  Volume<float> lab(m.voxels.geometry());
  for (index_t i = 0; i < lab.voxel_count(); ++i) lab.data()[i] = float(int(m.voxels.data()[i] / 40));
  write_image(labels, lab, PixelType::UInt8);
  const ToolRun l = run("apply -i " + labels + " -r " + fixed + " -o " + labels_out + " -t " + p + "1Warp.nii.gz -t " + p +
                    "0GenericAffine.mat -n GenericLabel");
  ASSERT_EQ(l.rc, 0) << l.all();
  EXPECT_EQ(read_image(labels_out).pixel_type, PixelType::UInt8);
}

TEST_F(CliFiles, PresetShortForm) {
  REQUIRE_CLI();
  const std::string out = (dir / "preset").string() + "/";
  const ToolRun r = run("register -f " + fixed + " -m " + moving + " -o " + out + " --preset affine --device cpu");
  ASSERT_EQ(r.rc, 0) << r.all();
  EXPECT_TRUE(fs::exists(out + "0GenericAffine.mat"));
  EXPECT_TRUE(fs::exists(out + "Warped.nii.gz"));
  EXPECT_FALSE(fs::exists(out + "1Warp.nii.gz"));
  EXPECT_NE(r.all().find("Affine"), std::string::npos) << r.all();
}

// -v 1 logs the run as a command (register_command.hpp); running that command again writes the
// same bytes: the printed command is the whole registration, presets written out stage by stage.
TEST_F(CliFiles, LoggedCommandRepeatsTheRun) {
  REQUIRE_CLI();
  const std::string first = (dir / "logged_a").string() + "/", second = (dir / "logged_b").string() + "/";
  const ToolRun r = run("register -f " + fixed + " -m " + moving + " -o " + first +
                        " --preset affine --device cpu --no-qc -v 1");
  ASSERT_EQ(r.rc, 0) << r.all();
  const std::string tag = "command: gigareg register ";
  const std::size_t at = r.err.find(tag);
  ASSERT_NE(at, std::string::npos) << r.err;
  std::string args = r.err.substr(at + tag.size(), r.err.find('\n', at) - at - tag.size());
  EXPECT_EQ(args.find("--preset"), std::string::npos) << args;  // the stages written out
  for (std::size_t p = args.find(first); p != std::string::npos; p = args.find(first, p + second.size()))
    args.replace(p, first.size(), second);
  const ToolRun again = run("register " + args + " --no-qc -v 0");
  ASSERT_EQ(again.rc, 0) << args << "\n" << again.all();
  for (const char* file : {"0GenericAffine.mat", "Warped.nii.gz"}) {
    ASSERT_TRUE(fs::exists(second + file)) << file;
    EXPECT_EQ(gigareg::test::slurp(first + file), gigareg::test::slurp(second + file)) << file;
  }
}

// ANTs' -w and -u as a user types them: the log names the windows, the run differs from one
// without them, and the warped image keeps the moving image's own intensities (the
// preprocessing is for the metrics only, as in antsRegistration).
TEST_F(CliFiles, WinsorizeAndHistogramMatchingChangeTheMetricsOnly) {
  REQUIRE_CLI();
  const std::string plain = (dir / "plain").string() + "/", processed = (dir / "processed").string() + "/";
  const std::string common = " -d 3 -r [" + fixed + "," + moving + ",1] -t Affine[0.1] -m MI[" + fixed + "," +
                             moving + ",1,32] -c [20x10,1e-6,10] -f 2x1 -s 1x0vox --device cpu --no-qc -v 1";
  const ToolRun a = run("register -o " + plain + common);
  ASSERT_EQ(a.rc, 0) << a.all();
  const ToolRun b = run("register -o [" + processed + "," + processed + "Warped.nii.gz]" + common +
                        " -w [0.02,0.98] -u 1");
  ASSERT_EQ(b.rc, 0) << b.all();
  EXPECT_NE(b.err.find("intensity preprocessing for the metrics"), std::string::npos) << b.err;
  // The logged command carries them (running it again is the same registration).
  EXPECT_NE(b.err.find("--winsorize-image-intensities '[0.02,0.98]' --use-histogram-matching 1"), std::string::npos)
      << b.err;
  EXPECT_NE(gigareg::test::slurp(plain + "0GenericAffine.mat"), gigareg::test::slurp(processed + "0GenericAffine.mat"));
  const Image warped = read_image(processed + "Warped.nii.gz"), original = read_image(moving);
  float warped_max = 0, moving_max = 0;
  for (index_t e = 0; e < warped.voxels.voxel_count(); ++e) warped_max = std::max(warped_max, warped.voxels.data()[e]);
  for (index_t e = 0; e < original.voxels.voxel_count(); ++e) moving_max = std::max(moving_max, original.voxels.data()[e]);
  EXPECT_GT(warped_max, 0.5f * moving_max);  // not [0, 1]: the moving image as read
  EXPECT_GT(moving_max, 2.0f);
}
