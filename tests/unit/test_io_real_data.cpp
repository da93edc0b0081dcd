// Real NIfTI files from the shared data folder (GIGAREG_SHARED_DATA; skipped when absent): every
// orientation the data has (LIA, LAS, RAS), uint8 / int16 / int32 on disk, and scl_slope. Our
// read must equal ITK's own ImageFileReader<itk::Image<float,3>> (geometry and bit-exact values),
// and a write + read must give the same voxels, geometry and pixel type back.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "io_test_util.hpp"

using namespace gigareg;
using namespace gigareg::testing;

namespace {

std::string shared_file(const std::string& relative) {
  return std::string(GIGAREG_SHARED_DATA) + "/" + relative;
}

struct RealCase {
  const char* file;
  PixelType pixel_type;  // as read: on-disk type, or float32 where scl_slope applies
  Index3 size;
  const char* name;
};

void PrintTo(const RealCase& c, std::ostream* os) { *os << c.file; }

class IoRealData : public ::testing::TestWithParam<RealCase> {};

}  // namespace

TEST_P(IoRealData, ReadEqualsItkAndRoundTrips) {
  const RealCase c = GetParam();
  const std::string path = shared_file(c.file);
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << path;

  const Image img = read_image(path);
  EXPECT_EQ(img.pixel_type, c.pixel_type) << to_string(img.pixel_type);
  EXPECT_EQ(img.voxels.geometry().size, c.size);

  // Exactly what ITK's reader reports and reads.
  const auto ref = itk_read_float(path);
  EXPECT_TRUE(same_geometry(img.voxels.geometry(), geometry_of(*ref)));
  const Volume<float> theirs = wrap_itk_image(ref.GetPointer());
  EXPECT_TRUE(same_voxels(img.voxels, theirs));

  // Write with the remembered pixel type, read back: same voxels, geometry and type.
  ScratchDir dir;
  const std::string out = dir.file(std::string(c.name) + ".nii.gz");
  write_image(out, img);
  const Image back = read_image(out);
  EXPECT_EQ(back.pixel_type, img.pixel_type);
  EXPECT_TRUE(same_voxels(back.voxels, img.voxels));
  // NIfTI keeps the orientation in float32.
  EXPECT_TRUE(same_geometry(back.voxels.geometry(), img.voxels.geometry(), 1e-4));
  EXPECT_EQ(read_image_header(out).pixel_type, img.pixel_type);
}

INSTANTIATE_TEST_SUITE_P(
    Shared, IoRealData,
    ::testing::Values(
        // FreeSurfer conformed, LIA
        RealCase{"brain_labelled/cfmi_sub-01_brainmask.nii.gz", PixelType::UInt8, {256, 256, 256},
                 "brainmask"},
        RealCase{"brain_labelled/cfmi_sub-01_aseg.nii.gz", PixelType::Int32, {256, 256, 256}, "aseg"},
        // FSL MNI152, LAS
        RealCase{"templates/fsl_MNI152_T1_2mm.nii.gz", PixelType::Int16, {91, 109, 91}, "mni"},
        // RAS
        RealCase{"brain_labelled/colin27_ch2_t1.nii.gz", PixelType::UInt8, {181, 217, 181}, "colin"},
        // uint8 with scl_slope 2.0078: the scaled values are floats
        RealCase{"multimodal/stroke_T2.nii.gz", PixelType::Float32, {124, 160, 140}, "stroke_t2"}),
    [](const ::testing::TestParamInfo<RealCase>& p) { return std::string(p.param.name); });

TEST(IoRealDataLabels, AsegLabelsStayIntegers) {
  const std::string path = shared_file("brain_labelled/cfmi_sub-01_aseg.nii.gz");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << path;
  const Image img = read_image(path);
  float max_label = 0;
  for (index_t i = 0; i < img.voxels.voxel_count(); ++i) {
    const float v = img.voxels.data()[i];
    ASSERT_EQ(v, std::floor(v)) << "voxel " << i;
    max_label = std::max(max_label, v);
  }
  EXPECT_GT(max_label, 40.0f);  // FreeSurfer aseg labels go up to 255
}

TEST(IoRealDataLabels, StrokeT2SlopeIsApplied) {
  const std::string path = shared_file("multimodal/stroke_T2.nii.gz");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << path;
  const Image img = read_image(path);
  // uint8 values times 2.0078...: some voxels are not integers.
  bool fractional = false;
  for (index_t i = 0; i < img.voxels.voxel_count() && !fractional; ++i)
    fractional = img.voxels.data()[i] != std::floor(img.voxels.data()[i]);
  EXPECT_TRUE(fractional);
}

TEST(IoRealDataLabels, FourDLabelMapIsRejected) {
  const std::string path = shared_file("multimodal/prostate_mr_trus/case000000_mr_label.nii.gz");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << path;
  const ImageHeader h = read_image_header(path);
  if (h.volumes <= 1) GTEST_SKIP() << path << " holds a single volume";
  EXPECT_EQ(h.dimensions, 4);
  EXPECT_EQ(h.geometry.size, (Index3{64, 64, 60}));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path,
                           std::to_string(h.volumes) + " volumes"));
}
