// The gigareg tool with OME-Zarr files, run as processes: register reads .zarr inputs and writes
// .zarr outputs with the same values as with NIfTI; apply takes a .zarr warp as a transform;
// jacobian and invert read and write .zarr; convert writes pyramids; info describes a store; a bad
// store ends a command with a clear error and no output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli_test_util.hpp"
#include "gigareg/io.hpp"
#include "io_test_util.hpp"

namespace gigareg {
namespace {

namespace fs = std::filesystem;
using test::quote;
using test::run_cli;
using test::ToolRun;
using testing::same_geometry;
using testing::same_voxels;

/// Elements equal within `tol` relative to the largest magnitude.
::testing::AssertionResult close_voxels(const Volume<float>& a, const Volume<float>& b, double tol) {
  if (a.element_count() != b.element_count()) return ::testing::AssertionFailure() << "sizes differ";
  double scale = 0, worst = 0;
  for (index_t i = 0; i < a.element_count(); ++i) {
    scale = std::max(scale, double(std::fabs(b.data()[i])));
    worst = std::max(worst, double(std::fabs(a.data()[i] - b.data()[i])));
  }
  if (worst <= tol * std::max(scale, 1.0)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "largest difference " << worst << " (scale " << scale << ")";
}

class CliZarr : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("gigareg_cli_zarr_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!std::getenv("GIGAREG_KEEP_TEST_FILES")) fs::remove_all(dir);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  /// A small smooth pair on an oblique anisotropic grid (int16 values) and a mask of the fixed
  /// image, as .nii.gz and .zarr.
  void make_pair() {
    Geometry g = testing::oblique_geometry({22, 20, 12});
    Volume<float> f(g), m(g);
    const Vec3d c = g.index_to_physical({10.5, 9.5, 5.5});
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const Vec3d p = g.index_to_physical({double(i), double(j), double(k)}) - c;
          auto blob = [](const Vec3d& q) {
            return 1000 * std::exp(-(q.x * q.x / 60 + q.y * q.y / 80 + q.z * q.z / 90)) +
                   600 * std::exp(-((q.x - 4) * (q.x - 4) + (q.y + 3) * (q.y + 3) + q.z * q.z) / 20);
          };
          f(i, j, k) = std::round(float(blob(p)));
          m(i, j, k) = std::round(float(blob(Vec3d{0.97 * p.x - 1.5, 1.02 * p.y + 1, p.z - 1})));
        }
    Volume<float> mask(g);  // a uint8 mask of the fixed image's support
    for (index_t i = 0; i < mask.voxel_count(); ++i) mask.data()[i] = f.data()[i] > 5 ? 1.0f : 0.0f;
    write_image(path("fixed.nii.gz"), f, PixelType::Int16);
    write_image(path("moving.nii.gz"), m, PixelType::Int16);
    write_image(path("mask.nii.gz"), mask, PixelType::UInt8);
    for (const char* n : {"fixed", "moving", "mask"}) {
      const ToolRun r = run_cli("convert " + quote(path(std::string(n) + ".nii.gz")) + " " +
                                quote(path(std::string(n) + ".zarr")) + " --zarr-chunk 8");
      ASSERT_EQ(r.rc, 0) << r.all();
    }
  }

  /// A short affine + greedy registration of the pair in `ext`, masked, outputs under prefix.
  std::string register_args(const std::string& ext, const std::string& prefix, const std::string& extra) const {
    const std::string pair = path("fixed" + ext) + "," + path("moving" + ext);
    return "register -v 0 --no-qc -d 3 --device cpu -o [" + prefix + "," + prefix + "warped" + ext +
           "] -r [" + pair + ",1] -t Affine[0.1] -m MeanSquares[" + pair +
           ",1] -c [10x5,1e-6,10] -f 2x1 -s 1x0vox -t Greedy[0.1,2,1] -m CC[" + pair +
           ",1,2] -c [6x3,1e-6,10] -f 2x1 -s 1x0vox -x " + path("mask" + ext) + " " + extra;
  }

  fs::path dir;
};

TEST_F(CliZarr, RegisterApplyJacobianInvertOnZarrMatchNifti) {
  REQUIRE_CLI();
  make_pair();
  const ToolRun nii = run_cli(register_args(".nii.gz", path("n_"), ""));
  ASSERT_EQ(nii.rc, 0) << nii.all();
  const ToolRun zarr = run_cli(register_args(".zarr", path("z_"), "--warp-extension .zarr --zarr-chunk 8x8x4"));
  ASSERT_EQ(zarr.rc, 0) << zarr.all();
  // The same registration: the inputs hold the same values and geometry.
  const DisplacementField wn = read_displacement_field(path("n_1Warp.nii.gz"));
  const DisplacementField wz = read_displacement_field(path("z_1Warp.zarr"));
  EXPECT_TRUE(same_voxels(wz, wn));
  // The .zarr holds the fixed image's geometry exactly; NIfTI rounds it to float.
  EXPECT_TRUE(same_geometry(wz.geometry(), read_image_header(path("fixed.nii.gz")).geometry));
  EXPECT_TRUE(same_geometry(wz.geometry(), wn.geometry(), 1e-5));
  EXPECT_TRUE(same_voxels(read_displacement_field(path("z_1InverseWarp.zarr")),
                          read_displacement_field(path("n_1InverseWarp.nii.gz"))));
  const Image warped_n = read_image(path("n_warped.nii.gz"));
  const Image warped_z = read_image(path("z_warped.zarr"));
  EXPECT_EQ(warped_z.pixel_type, warped_n.pixel_type);
  EXPECT_TRUE(same_voxels(warped_z.voxels, warped_n.voxels));
  for (const auto& e : fs::directory_iterator(dir))  // no staged temporaries left
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();

  // apply: the .zarr warp as a transform, .zarr in and out.
  const ToolRun an = run_cli("apply -i " + quote(path("moving.nii.gz")) + " -r " + quote(path("fixed.nii.gz")) +
                             " -o " + quote(path("an.nii.gz")) + " -t " + quote(path("n_1Warp.nii.gz")) +
                             " -t " + quote(path("n_0GenericAffine.mat")));
  ASSERT_EQ(an.rc, 0) << an.all();
  const ToolRun az = run_cli("apply -i " + quote(path("moving.zarr")) + " -r " + quote(path("fixed.zarr")) +
                             " -o " + quote(path("az.zarr")) + " -t " + quote(path("z_1Warp.zarr")) + " -t " +
                             quote(path("z_0GenericAffine.mat")));
  ASSERT_EQ(az.rc, 0) << az.all();
  EXPECT_TRUE(same_voxels(read_image(path("az.zarr")).voxels, read_image(path("an.nii.gz")).voxels));

  // jacobian and invert read and write stores (the same values up to the float rounding of the
  // NIfTI warp's geometry, which the .zarr warp does not have).
  for (const std::string cmd : {"jacobian", "invert"}) {
    const ToolRun n = run_cli(cmd + " -i " + quote(path("n_1Warp.nii.gz")) + " -o " + quote(path(cmd + ".nii.gz")));
    const ToolRun z = run_cli(cmd + " -i " + quote(path("z_1Warp.zarr")) + " -o " + quote(path(cmd + ".zarr")));
    ASSERT_EQ(n.rc, 0) << n.all();
    ASSERT_EQ(z.rc, 0) << z.all();
    if (cmd == "jacobian")
      EXPECT_TRUE(close_voxels(read_image(path(cmd + ".zarr")).voxels, read_image(path(cmd + ".nii.gz")).voxels, 1e-5));
    else
      EXPECT_TRUE(close_voxels(read_displacement_field(path(cmd + ".zarr")),
                               read_displacement_field(path(cmd + ".nii.gz")), 1e-5));
  }
}

TEST_F(CliZarr, ConvertWritesPyramidsAndInfoDescribesTheStore) {
  REQUIRE_CLI();
  make_pair();
  const ToolRun c = run_cli("convert " + quote(path("fixed.nii.gz")) + " " + quote(path("p.zarr")) +
                            " --pyramid 2 --zarr-chunk 8 --zarr-codec lz4:5");
  ASSERT_EQ(c.rc, 0) << c.all();
  const ToolRun info = run_cli("info " + quote(path("p.zarr")));
  ASSERT_EQ(info.rc, 0) << info.all();
  EXPECT_NE(info.out.find("int16"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("storage     OME-Zarr (NGFF 0.4, Zarr v2): 3 level(s) (22x20x12, 11x10x6, 6x5x3), "
                          "chunks 8x8x8 voxels, blosc/lz4:5 shuffle"),
            std::string::npos)
      << info.out;
  // Back to NIfTI: the same file as a NIfTI-to-NIfTI copy.
  const ToolRun back = run_cli("convert " + quote(path("p.zarr")) + " " + quote(path("back.nii.gz")));
  ASSERT_EQ(back.rc, 0) << back.all();
  const ToolRun direct = run_cli("convert " + quote(path("fixed.nii.gz")) + " " + quote(path("direct.nii.gz")));
  ASSERT_EQ(direct.rc, 0) << direct.all();
  EXPECT_EQ(testing::read_bytes(path("back.nii.gz")), testing::read_bytes(path("direct.nii.gz")));
  const ToolRun labels = run_cli("convert " + quote(path("fixed.nii.gz")) + " " + quote(path("l.zarr")) +
                                 " --pyramid 1 --labels");
  EXPECT_EQ(labels.rc, 0) << labels.all();
  const ToolRun help = run_cli("convert --help");
  EXPECT_NE(help.out.find("--pyramid"), std::string::npos);
  EXPECT_NE(help.out.find("--labels"), std::string::npos);
}

TEST_F(CliZarr, BadStoresAndOptionsEndTheCommandWithNoOutput) {
  REQUIRE_CLI();
  make_pair();
  // A corrupt chunk of the moving image: register fails naming it and writes nothing.
  const std::string chunk = path("moving.zarr") + "/0/1/1/1";
  std::string bytes = testing::read_bytes(chunk);
  testing::write_bytes(chunk, bytes.substr(0, bytes.size() - 5));
  const ToolRun r = run_cli(register_args(".zarr", path("out/reg_"), "--warp-extension .zarr"));
  EXPECT_EQ(r.rc, 1) << r.all();
  EXPECT_NE(r.err.find("gigareg: error: " + path("moving.zarr") + " (chunk 0/1/1/1)"), std::string::npos) << r.err;
  EXPECT_TRUE(!fs::exists(path("out")) || fs::is_empty(path("out")));
  const ToolRun c = run_cli("convert " + quote(path("moving.zarr")) + " " + quote(path("m.nii")));
  EXPECT_EQ(c.rc, 1);
  EXPECT_FALSE(fs::exists(path("m.nii")));
  const ToolRun codec = run_cli("convert " + quote(path("fixed.zarr")) + " " + quote(path("x.zarr")) +
                                " --zarr-codec brotli");
  EXPECT_EQ(codec.rc, 1);
  EXPECT_NE(codec.err.find("--zarr-codec: expected zstd, lz4 or none"), std::string::npos) << codec.err;
  const ToolRun pyr = run_cli("convert " + quote(path("fixed.zarr")) + " " + quote(path("x.nii")) + " --pyramid 2");
  EXPECT_EQ(pyr.rc, 1);
  EXPECT_NE(pyr.err.find("only a .zarr output"), std::string::npos) << pyr.err;
  EXPECT_FALSE(fs::exists(path("x.zarr")));
  EXPECT_FALSE(fs::exists(path("x.nii")));
}

}  // namespace
}  // namespace gigareg
