// Reading a slab of planes (what each rank of a distributed run reads): the same voxels as the
// whole-image read, and, for uncompressed NIfTI, only the slab's bytes read from the file.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <zlib.h>

#include "gigareg/io.hpp"
#include "io_test_util.hpp"
#include "test_util.hpp"

namespace gigareg::testing {
namespace {

using gigareg::test::bytes_read_so_far;

bool same_planes(const Image& slab, const Image& whole) {
  const Box& b = slab.voxels.box();
  for (index_t k = b.lo.z; k < b.lo.z + b.size.z; ++k)
    for (index_t j = 0; j < b.size.y; ++j)
      for (index_t i = 0; i < b.size.x; ++i)
        if (std::memcmp(&slab.voxels(i, j, k), &whole.voxels(i, j, k), sizeof(float)) != 0) return false;
  return slab.pixel_type == whole.pixel_type && slab.voxels.geometry().equals(whole.voxels.geometry());
}

TEST(ImageSlab, EqualsTheWholeReadForEveryFormat) {
  ScratchDir dir;
  Geometry g;
  g.size = {23, 17, 29};
  g.spacing = {0.9, 1.1, 1.7};
  g.origin = {-10, 4, 7};
  const Volume<float> v = random_volume(g, 1, -50.0, 200.0, true, 5);
  for (const char* name : {"a.nii", "a.nii.gz", "a.nrrd", "a.mha"}) {
    const std::string path = dir.file(name);
    write_image(path, v, PixelType::Int16, IntegerConversion::RoundAndClamp);
    const Image whole = read_image(path);
    for (index_t z0 : {index_t(0), index_t(11), index_t(28)}) {
      const Image slab = read_image_slab(path, z0, std::min<index_t>(6, g.size.z - z0));
      EXPECT_EQ(slab.voxels.box().lo.z, z0) << name;
      EXPECT_TRUE(same_planes(slab, whole)) << name << " planes from " << z0;
    }
  }
  EXPECT_THROW(read_image_slab(dir.file("a.nii"), 25, 5), Error);
  EXPECT_THROW(read_image_slab(dir.file("a.nii"), 3, 0), Error);
}

TEST(ImageSlab, UncompressedNiftiReadsOnlyTheSlabsBytes) {
  ScratchDir dir;
  Geometry g;
  g.size = {64, 48, 96};
  const Volume<float> v = random_volume(g, 1, 0.0, 1.0, false, 9);
  const std::string path = dir.file("big.nii");
  write_image(path, v, PixelType::Float32);
  const std::uint64_t file_bytes = std::filesystem::file_size(path);
  const std::uint64_t slab_bytes = 64 * 48 * 12 * sizeof(float);
  const std::uint64_t before = bytes_read_so_far();
  const Image slab = read_image_slab(path, 40, 12);
  const std::uint64_t read = bytes_read_so_far() - before;
  std::printf("[ info ] a 12-plane slab of a %llu-byte .nii: %llu bytes read (slab %llu)\n",
              static_cast<unsigned long long>(file_bytes), static_cast<unsigned long long>(read),
              static_cast<unsigned long long>(slab_bytes));
  // The slab, the header and a little slack for ITK's header parsing: far below the file.
  EXPECT_GE(read, slab_bytes);
  EXPECT_LE(read, slab_bytes + 64 * 1024);
  EXPECT_LT(read, file_bytes / 4);
  EXPECT_TRUE(same_planes(slab, read_image(path)));
}

/// `gz` inflated into `out` (an uncompressed copy of a .nii.gz).
void inflate_to(const std::string& gz, const std::string& out) {
  gzFile in = gzopen(gz.c_str(), "rb");
  ASSERT_NE(in, nullptr);
  std::ofstream o(out, std::ios::binary);
  char buf[1 << 16];
  int got = 0;
  while ((got = gzread(in, buf, sizeof buf)) > 0) o.write(buf, got);
  gzclose(in);
}

TEST(ImageSlab, RealObliqueAndScaledFiles) {
  // cfmi: LIA, uint8; stroke T2: RAS, scl_slope 2.008 (read as float). Both compressed, and
  // inflated to .nii (the direct byte-range path) against ITK's whole read.
  const std::string data = std::string(GIGAREG_SHARED_DATA);
  ScratchDir dir;
  for (const std::string rel : {"/brain_labelled/cfmi_sub-01_brainmask.nii.gz", "/multimodal/stroke_T2.nii.gz"}) {
    const std::string path = data + rel;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "real data not found: " << path;
    const std::string plain = dir.file(std::filesystem::path(rel).stem().string());  // x.nii
    inflate_to(path, plain);
    const Image whole = read_image(path);
    const index_t nz = whole.voxels.geometry().size.z;
    for (const std::string& p : {path, plain}) {
      const Image slab = read_image_slab(p, nz / 3, nz / 4);
      EXPECT_TRUE(same_planes(slab, whole)) << p;
    }
  }
}

}  // namespace
}  // namespace gigareg::testing
