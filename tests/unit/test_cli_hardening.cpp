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
