// The programs of examples/, built against the library as a user's program would be, and run as
// a user would run them.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "cli_test_util.hpp"
#include "gigareg/io.hpp"
#include "test_util.hpp"

namespace gigareg {
namespace {

namespace fs = std::filesystem;

// register_pair with the rigid preset on a pair whose moving grid is the fixed one moved by t:
// the same voxels, so the transform fixed -> moving is x + t.
TEST(Examples, RegisterPairRecoversAKnownShift) {
  const std::string program = GIGAREG_EXAMPLE_REGISTER_PAIR;
  if (!fs::exists(program)) GTEST_SKIP() << program << " is not built (GIGAREG_BUILD_EXAMPLES=OFF)";
  const fs::path dir = fs::temp_directory_path() / ("gigareg_examples_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Geometry g = test::make_geometry({32, 30, 28}, {2, 2, 2}, {-31, -29, -27});
  const Volume<float> fixed = test::random_smooth_volume(g, 7, 1.0, 1.0, 2.0);
  const Vec3d t{4.0, -2.0, 1.0};
  Geometry moved = g;
  moved.origin = {g.origin.x + t.x, g.origin.y + t.y, g.origin.z + t.z};
  Volume<float> moving(moved);
  std::memcpy(moving.data(), fixed.data(), std::size_t(fixed.voxel_count()) * sizeof(float));
  write_image((dir / "fixed.nii").string(), fixed);
  write_image((dir / "moving.nii").string(), moving);

  const std::string prefix = (dir / "pair_").string();
  const test::ToolRun r = test::run_program(program, test::quote((dir / "fixed.nii").string()) + " " +
                                                         test::quote((dir / "moving.nii").string()) +
                                                         " rigid " + test::quote(prefix));
  EXPECT_EQ(r.rc, 0) << r.all();
  EXPECT_NE(r.out.find("wrote " + prefix + "Warped.nii.gz"), std::string::npos) << r.all();
  const Affined a = read_affine_transform(prefix + "0GenericAffine.mat").affine();
  for (int i = 0; i < 9; ++i)
    EXPECT_NEAR(a.matrix.m[i], Mat3d::identity().m[i], 0.01) << "matrix element " << i;
  EXPECT_NEAR(a.offset.x, t.x, 0.3);
  EXPECT_NEAR(a.offset.y, t.y, 0.3);
  EXPECT_NEAR(a.offset.z, t.z, 0.3);
  const Image warped = read_image(prefix + "Warped.nii.gz");
  EXPECT_TRUE(warped.voxels.geometry().equals(g, 1e-6));
  if (!std::getenv("GIGAREG_KEEP_TEST_FILES")) fs::remove_all(dir);

  // Wrong use: a usage line and exit code 2; a bad preset: the library's error and exit code 1.
  EXPECT_EQ(test::run_program(program, "").rc, 2);
  const test::ToolRun bad = test::run_program(program, "a.nii b.nii bspline out_");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("unknown preset 'bspline'"), std::string::npos) << bad.all();
}

}  // namespace
}  // namespace gigareg
