// Issue 18 through the gigareg tool: a command whose outputs cannot all be written fails before
// the work and leaves none of them (not the .mat and warps of a set whose QC picture or warped
// image cannot be written); bad input files are errors naming them, not crashes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "cli_test_util.hpp"
#include "gigareg/io.hpp"

using namespace gigareg;
namespace fs = std::filesystem;
using gigareg::test::run_cli;
using gigareg::test::ToolRun;

namespace {

class CliHardening : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("gigareg_cli_hard_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "out");
    Geometry g;
    g.size = {20, 22, 18};
    g.spacing = {2, 2, 2};
    Volume<float> f(g), m(g);
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const bool in_f = i > 5 && i < 14 && j > 5 && j < 16 && k > 4 && k < 13;
          const bool in_m = i > 6 && i < 15 && j > 5 && j < 16 && k > 4 && k < 13;
          f(i, j, k) = in_f ? 100.0f + float(i) : 0.0f;
          m(i, j, k) = in_m ? 100.0f + float(i) : 0.0f;
        }
    fixed = (dir / "fixed.nii.gz").string();
    moving = (dir / "moving.nii.gz").string();
    write_image(fixed, f);
    write_image(moving, m);
  }
  void TearDown() override { fs::remove_all(dir); }

  /// An affine + greedy registration writing into out/ (prefix out/r_), with `extra` options.
  ToolRun register_with(const std::string& outputs, const std::string& extra = "") {
    const std::string pair = fixed + "," + moving;
    return run_cli("register -d 3 --device cpu -v 0 -o " + outputs + " -t Affine[0.1] -m MeanSquares[" + pair +
                   ",1] -c [4,1e-6,10] -f 1 -s 0vox -t Greedy[0.1,2,1] -m CC[" + pair +
                   ",1,2] -c [2,1e-6,10] -f 1 -s 0vox " + extra);
  }
  std::vector<std::string> out_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir / "out")) names.push_back(e.path().filename().string());
    return names;
  }

  fs::path dir;
  std::string fixed, moving;
};

}  // namespace

TEST_F(CliHardening, UnwritableOutputsFailBeforeAnyOutputIsWritten) {
  REQUIRE_CLI();
  const std::string p = (dir / "out" / "r_").string();
  // A QC picture in a directory where no file can be created (root ignores permissions: /proc).
  std::string unwritable_dir = "/proc";
  if (::geteuid() != 0) {
    fs::create_directory(dir / "ro");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    unwritable_dir = (dir / "ro").string();
  }
  struct Case {
    std::string outputs, extra, needle;
  };
  const Case cases[] = {
      {"[" + p + "," + p + "warped.xyz]", "", "'.xyz'"},
      {"[" + p + "," + p + "warped.hdr]", "", "two-file"},
      {"[" + p + "," + p + "warped.nii.gz," + p + "inverse.img]", "", "two-file"},
      {"[" + p + "," + p + "warped.nii.gz]", "--qc " + unwritable_dir + "/qc.png", "cannot create a file"},
  };
  for (const Case& c : cases) {
    const ToolRun r = register_with(c.outputs, c.extra);
    EXPECT_NE(r.rc, 0) << c.outputs << " " << c.extra << "\n" << r.all();
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.all();
    EXPECT_TRUE(out_entries().empty()) << c.outputs << " " << c.extra << ": left "
                                       << (out_entries().empty() ? "" : out_entries()[0]);
  }
  if (::geteuid() != 0) fs::permissions(dir / "ro", fs::perms::owner_all);
  // The same command with good names writes the whole set.
  const ToolRun ok = register_with("[" + p + "," + p + "warped.nii.gz]");
  ASSERT_EQ(ok.rc, 0) << ok.all();
  for (const char* f : {"r_0GenericAffine.mat", "r_1Warp.nii.gz", "r_1InverseWarp.nii.gz", "r_warped.nii.gz", "r_QC.png"})
    EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
  EXPECT_EQ(out_entries().size(), 5u);
}

TEST_F(CliHardening, NaNInTheSformIsAnErrorNotAnAbort) {
  REQUIRE_CLI();
  // The fixed image with a NaN at byte 280 (srow_x[0]) and sform_code 1.
  std::string bytes;
  {
    const std::string plain = (dir / "plain.nii").string();
    write_image(plain, read_image(fixed));
    bytes = gigareg::test::slurp(plain);
  }
  const short code = 1;
  std::memcpy(&bytes[254], &code, 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&bytes[280], &nan, 4);
  const std::string bad = (dir / "sform_nan.nii").string();
  { std::ofstream(bad, std::ios::binary) << bytes; }
  const ToolRun r = run_cli("apply -i " + bad + " -r " + fixed + " -o " + (dir / "out" / "a.nii.gz").string());
  EXPECT_EQ(r.rc, 1) << r.all();
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.all();
  EXPECT_NE(r.err.find("srow"), std::string::npos) << r.all();
  EXPECT_TRUE(out_entries().empty());
}

TEST_F(CliHardening, OptionErrorsNameTheOptionAndIgnoredInputsAreRefused) {
  REQUIRE_CLI();
  const std::string p = (dir / "out" / "r_").string();
  const std::string pair = fixed + "," + moving;
  const std::string stage = " -t Affine[0.1] -m MeanSquares[" + pair + ",1] -c [2,1e-6,10] -s 0vox ";
  struct Case {
    std::string extra, needle;
  };
  const Case cases[] = {
      // Item 9: a number that is not one ("internal error: stod" once), named with its option.
      {"-f 1 --winsorize-image-intensities '[abc,1]'", "--winsorize-image-intensities: 'abc'"},
      {"-f 1 --winsorize-image-intensities '[1e999,1]'", "--winsorize-image-intensities: '1e999'"},
      {"-f 1 --winsorize-image-intensities '[0.99,0.01]'", "0 <= lower < upper <= 1"},
      {"-f 1 -c x", "-c/--convergence"},
      // Item 12: -r's images must be the registered pair; -f beyond the image is no level at all.
      {"-f 1 -r '[" + moving + "," + fixed + ",1]'", "-r/--initial-moving-transform"},
      {"-f 1e308", "-f/--shrink-factors"},
      {"-f 30", "exceeds the fixed image's largest size (22 voxels)"},
  };
  for (const Case& c : cases) {
    const ToolRun r = run_cli("register -d 3 --device cpu -v 0 -o " + p + stage + c.extra);
    EXPECT_EQ(r.rc, 1) << c.extra << "\n" << r.all();
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.extra << "\n" << r.all();
    EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.all();
    EXPECT_TRUE(out_entries().empty()) << c.extra;
  }
  // The same pair, written differently, is accepted.
  const std::string same = (dir / "." / "fixed.nii.gz").string() + "," + moving;
  const ToolRun ok = run_cli("register -d 3 --device cpu -v 0 --no-qc -o " + p + stage + "-f 1 -r '[" + same + ",1]'");
  EXPECT_EQ(ok.rc, 0) << ok.all();
}

// A NaN voxel in an input image was reported as "the transform's parameters overflowed", naming
// neither the file nor the voxel; now the read image is refused, before any output.
TEST_F(CliHardening, ANaNVoxelInAnInputImageIsNamed) {
  REQUIRE_CLI();
  Image m = read_image(moving);
  m.voxels(3, 4, 5) = std::numeric_limits<float>::quiet_NaN();
  const std::string with_nan = (dir / "moving_nan.nii.gz").string();
  write_image(with_nan, m.voxels);
  const std::string p = (dir / "out" / "r_").string();
  const ToolRun r = run_cli("register -d 3 --device cpu -v 0 -o " + p + " -t Affine[0.1] -m MI[" + fixed + "," +
                            with_nan + ",1,32] -c [2,1e-6,10] -f 1 -s 0vox");
  EXPECT_EQ(r.rc, 1) << r.all();
  EXPECT_NE(r.err.find(with_nan + ": voxel (3, 4, 5) is NaN"), std::string::npos) << r.all();
  EXPECT_TRUE(out_entries().empty());
}

TEST_F(CliHardening, TransformFileErrorsNameTheFile) {
  REQUIRE_CLI();
  // Item 12: a NaN in a .mat was reported as "invert_affine: the affine matrix is singular".
  const std::string good = (dir / "good.mat").string();
  write_affine_transform(good, Mat3d::identity(), {1, 2, 3});
  std::string bytes = gigareg::test::slurp(good);
  const std::string name = "AffineTransform_double_3_3";
  const std::size_t values = bytes.find(name) + name.size() + 1;  // the first parameter, a double
  ASSERT_LT(values + 8, bytes.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::memcpy(&bytes[values], &nan, sizeof nan);
  const std::string bad = (dir / "nan.mat").string();
  { std::ofstream(bad, std::ios::binary) << bytes; }
  const std::string singular = (dir / "singular.txt").string();
  write_affine_transform(singular, Mat3d{{1, 0, 0, 0, 0, 0, 0, 0, 1}}, {0, 0, 0});
  const std::string out = (dir / "out" / "a.nii.gz").string();
  struct Case {
    std::string transform, file, needle;
  };
  const Case cases[] = {
      {bad, bad, "not finite"},
      {"'[" + bad + ",1]'", bad, "not finite"},
      {"'[" + singular + ",1]'", singular, "singular"},
  };
  for (const Case& c : cases) {
    const ToolRun r = run_cli("apply -i " + moving + " -r " + fixed + " -o " + out + " -t " + c.transform);
    EXPECT_EQ(r.rc, 1) << r.all();
    EXPECT_NE(r.err.find(c.file + ": "), std::string::npos) << r.all();
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.all();
    EXPECT_TRUE(out_entries().empty());
  }
  const ToolRun r = register_with((dir / "out" / "r_").string(), "-r '[" + singular + ",1]'");
  EXPECT_EQ(r.rc, 1) << r.all();
  EXPECT_NE(r.err.find(singular + ": the affine transform is singular"), std::string::npos) << r.all();
  EXPECT_TRUE(out_entries().empty());
}

TEST_F(CliHardening, CompositeTransformsAreByteIdenticalBetweenRuns) {
  REQUIRE_CLI();
  // Item 14: ITK's HDF5 writer stores object creation times; two runs a second apart differed.
  std::vector<std::string> runs;
  for (const char* sub : {"a/r_", "b/r_"}) {
    const ToolRun r = register_with((dir / "out" / sub).string(), "--no-qc --write-composite-transform 1");
    ASSERT_EQ(r.rc, 0) << r.all();
    ::sleep(1);  // HDF5's times are in seconds
  }
  for (const char* f : {"r_Composite.h5", "r_InverseComposite.h5", "r_0GenericAffine.mat", "r_1Warp.nii.gz"}) {
    const std::string a = gigareg::test::slurp(dir / "out" / "a" / f), b = gigareg::test::slurp(dir / "out" / "b" / f);
    EXPECT_FALSE(a.empty()) << f;
    EXPECT_TRUE(a == b) << f << " differs between two identical runs";
  }
  // An affine written as .h5 (the same writer) is read back by ITK's reader.
  const std::string h5 = (dir / "affine.h5").string();
  write_affine_transform(h5, Mat3d{{1.5, 0, 0, 0, 1, 0, 0, 0.25, 1}}, {1, 2, 3}, {4, 5, 6});
  const ItkAffine back = read_affine_transform(h5);
  EXPECT_EQ(back.matrix(0, 0), 1.5);
  EXPECT_EQ(back.matrix(2, 1), 0.25);
  EXPECT_EQ(back.translation[2], 3.0);
  EXPECT_EQ(back.center[1], 5.0);
}
