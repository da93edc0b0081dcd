// The direct NIfTI path (src/io/nifti_data.cpp, src/io/gzip_blocks.cpp): files written by gigareg
// must be what ITK writes, byte for byte once decompressed; .nii.gz must be a valid gzip stream
// for gzip itself and for ITK; reading must give ITK's values for gigareg's block files and for
// other gzip files, for whole images and slabs; corruption must be reported, not read as data.

#include <gtest/gtest.h>
#include <itkImageFileWriter.h>
#include <omp.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gigareg/itk_adapters.hpp"
#include "io/gzip_blocks.hpp"
#include "io_test_util.hpp"

namespace gigareg {
namespace {

using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

// The decompressed content of a (possibly gzip) file, through zlib's gzread (multi-member aware).
std::string content_of(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  std::string out;
  std::vector<char> buf(1 << 20);
  int got;
  while ((got = gzread(f, buf.data(), unsigned(buf.size()))) > 0) out.append(buf.data(), std::size_t(got));
  gzclose(f);
  return out;
}

// ITK's own ImageFileWriter output for the same volume and pixel type.
void itk_write(const std::string& path, const Volume<float>& v, PixelType type) {
  register_itk_io_factories();
  if (v.components() == 3) {
    auto w = itk::ImageFileWriter<ItkDisplacementField>::New();
    w->SetFileName(path);
    w->SetInput(to_itk_displacement_field(v));
    w->SetUseCompression(path.size() > 3 && path.substr(path.size() - 3) == ".gz");
    w->Update();
    return;
  }
  auto write_as = [&](auto tag) {
    using T = decltype(tag);
    using ImageT = itk::Image<T, 3>;
    typename ImageT::Pointer image = ImageT::New();
    set_itk_geometry(*image, v.geometry());
    image->Allocate();
    for (index_t i = 0; i < v.voxel_count(); ++i) image->GetBufferPointer()[i] = static_cast<T>(v.data()[i]);
    auto w = itk::ImageFileWriter<ImageT>::New();
    w->SetFileName(path);
    w->SetInput(image);
    w->SetUseCompression(path.size() > 3 && path.substr(path.size() - 3) == ".gz");
    w->Update();
  };
  switch (type) {
    case PixelType::UInt8: return write_as(std::uint8_t{});
    case PixelType::Int16: return write_as(std::int16_t{});
    case PixelType::UInt16: return write_as(std::uint16_t{});
    case PixelType::Int32: return write_as(std::int32_t{});
    case PixelType::Float64: return write_as(double{});
    default: return write_as(float{});
  }
}

struct Case {
  const char* name;
  Index3 size;
  PixelType type;
  int components;
};

class DirectNifti : public ::testing::TestWithParam<Case> {};

TEST_P(DirectNifti, MatchesItkByteForByte) {
  const Case c = GetParam();
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry(c.size);
  const bool integers = c.type != PixelType::Float32 && c.type != PixelType::Float64;
  const Volume<float> v = testing::random_volume(g, c.components, integers ? 0 : -50, integers ? 200 : 50, integers);
  for (const char* ext : {".nii", ".nii.gz"}) {
    const std::string ours = dir.file(std::string("ours") + ext);
    const std::string itk = dir.file(std::string("itk") + ext);
    if (c.components == 3)
      write_displacement_field(ours, v);
    else
      write_image(ours, v, c.type);
    itk_write(itk, v, c.type);
    if (std::string(ext) == ".nii.gz") {  // written by the direct path, not by ITK
      const std::string raw = read_bytes(ours);
      EXPECT_FALSE(io_detail::find_block_members(reinterpret_cast<const unsigned char*>(raw.data()),
                                                 raw.size()).empty()) << c.name;
    }
    const std::string a = content_of(ours), b = content_of(itk);
    ASSERT_EQ(a.size(), b.size()) << c.name << ext;
    EXPECT_TRUE(a == b) << c.name << ext << ": the decompressed files differ";
  }
  // Nothing but the two outputs of each kind is left in the directory (the header probe is gone).
  EXPECT_EQ(dir.entries().size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(
    Geometries, DirectNifti,
    ::testing::Values(Case{"float32", {19, 13, 11}, PixelType::Float32, 1},
                      Case{"uint8", {17, 9, 5}, PixelType::UInt8, 1},
                      Case{"int16", {8, 21, 3}, PixelType::Int16, 1},
                      Case{"uint16", {5, 6, 7}, PixelType::UInt16, 1},
                      Case{"int32", {9, 9, 2}, PixelType::Int32, 1},
                      Case{"float64", {12, 7, 6}, PixelType::Float64, 1},
                      Case{"field", {14, 11, 9}, PixelType::Float32, 3},
                      // More than one gzip member per component (4 MiB blocks).
                      Case{"field_multiblock", {128, 96, 40}, PixelType::Float32, 3},
                      // Planes larger than a block: each plane is cut into members at a byte offset
                      // (not a row boundary: 1051 x 4 bytes does not divide 4 MiB).
                      Case{"float32_plane_pieces", {1051, 1003, 2}, PixelType::Float32, 1},
                      Case{"int16_plane_pieces", {2099, 1003, 2}, PixelType::Int16, 1}),
    [](const ::testing::TestParamInfo<Case>& param) { return std::string(param.param.name); });

TEST(DirectNifti, GzipAndItkReadTheBlockFiles) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({160, 120, 64});  // 4.7 MiB per component
  const Volume<float> v = testing::random_volume(g, 1, -1, 1, false);
  const std::string path = dir.file("img.nii.gz");
  write_image(path, v);
  const std::string data = read_bytes(path);
  EXPECT_GT(io_detail::find_block_members(reinterpret_cast<const unsigned char*>(data.data()), data.size()).size(), 1u);
  // gzip itself: the stream (all its members) passes gzip's own test.
  if (std::system("command -v gzip > /dev/null 2>&1") == 0) {
    EXPECT_EQ(std::system(("gzip -t '" + path + "'").c_str()), 0);
  } else {
    GTEST_SKIP() << "gzip is not installed: gzip -t not run";
  }
  // ITK's reader gives the values written.
  auto itk_image = testing::itk_read_float(path);
  const float* p = itk_image->GetBufferPointer();
  for (index_t i = 0; i < v.voxel_count(); ++i) ASSERT_EQ(p[i], v.data()[i]) << i;
}

// nibabel (the Python reader most pipelines use) decodes the block files as one stream; skipped
// where python3 or nibabel is not installed (`pip install nibabel` to run it).
TEST(DirectNifti, NibabelReadsTheBlockFiles) {
  // The first python3 on PATH may be another installation than the system's, which has
  // Debian's nibabel (scripts/install-deps.sh).
  std::string python;
  for (const char* candidate : {"python3", "/usr/bin/python3"})
    if (python.empty() &&
        std::system((std::string(candidate) + " -c 'import nibabel' > /dev/null 2>&1").c_str()) == 0)
      python = candidate;
  if (python.empty()) GTEST_SKIP() << "python3 with nibabel is not installed: nibabel's reading not checked";
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({128, 96, 100});  // several members per component
  const Volume<float> u = testing::random_volume(g, 3, -5, 5, false);
  const Volume<float> labels = testing::random_volume(g, 1, 0, 200, true);
  write_displacement_field(dir.file("u.nii.gz"), u);
  write_image(dir.file("l.nii.gz"), labels, PixelType::UInt8);
  // Sums in double of what nibabel decodes, against the same sums here (field: x, y, z planes
  // on disk; nibabel's array is (x, y, z, 1, 3), its ravel in Fortran order is the file's order).
  double su = 0, sl = 0;
  for (index_t i = 0; i < 3 * u.voxel_count(); ++i) su += double(u.data()[i]) * double(i % 7 + 1);
  for (index_t i = 0; i < labels.voxel_count(); ++i) sl += double(labels.data()[i]) * double(i % 5 + 1);
  const std::string script =
      "import nibabel as nib, numpy as np, sys\n"
      "u = np.asanyarray(nib.load(sys.argv[1]).dataobj).ravel(order='F').astype(np.float64)\n"
      "l = np.asanyarray(nib.load(sys.argv[2]).dataobj).ravel(order='F').astype(np.float64)\n"
      "print(repr(float((u * (np.arange(u.size) % 7 + 1)).sum())), "
      "repr(float((l * (np.arange(l.size) % 5 + 1)).sum())))\n";
  testing::write_bytes(dir.file("check.py"), script);
  const std::string cmd = python + " '" + dir.file("check.py") + "' '" + dir.file("u.nii.gz") + "' '" +
                          dir.file("l.nii.gz") + "' > '" + dir.file("sums.txt") + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string out = read_bytes(dir.file("sums.txt"));
  double nu = 0, nl = 0;
  ASSERT_EQ(std::sscanf(out.c_str(), "%lf %lf", &nu, &nl), 2) << out;
  EXPECT_NEAR(nu, su, 1e-9 * std::abs(su) + 1e-6);
  EXPECT_EQ(nl, sl);
}

TEST(DirectNifti, ReadsAsItkDoesForEveryFileKind) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({150, 110, 70});
  const Volume<float> v = testing::random_volume(g, 1, -10, 10, false);
  const std::string block = dir.file("block.nii.gz"), single = dir.file("single.nii.gz"),
                    plain = dir.file("plain.nii");
  write_image(block, v);
  itk_write(single, v, PixelType::Float32);  // one zlib member, written by ITK
  write_image(plain, v);
  for (const std::string& path : {block, single, plain}) {
    const Image whole = read_image(path);
    EXPECT_TRUE(testing::same_voxels(whole.voxels, v)) << path;
    // Slabs, including ones that start and end inside gzip members.
    for (auto [z0, nz] : {std::pair<index_t, index_t>{0, 1}, {13, 29}, {69, 1}, {1, 68}}) {
      const Image slab = read_image_slab(path, z0, nz);
      const std::size_t plane = std::size_t(g.size.x * g.size.y);
      for (std::size_t i = 0; i < plane * std::size_t(nz); ++i)
        ASSERT_EQ(slab.voxels.data()[i], v.data()[std::size_t(z0) * plane + i]) << path << " z0 " << z0;
    }
  }
  // Displacement fields, from gigareg's and from ITK's .nii.gz.
  const Volume<float> u = testing::random_volume(g, 3, -5, 5, false);
  write_displacement_field(dir.file("u.nii.gz"), u);
  itk_write(dir.file("u_itk.nii.gz"), u, PixelType::Float32);
  EXPECT_TRUE(testing::same_voxels(read_displacement_field(dir.file("u.nii.gz")), u));
  EXPECT_TRUE(testing::same_voxels(read_displacement_field(dir.file("u_itk.nii.gz")), u));
}

TEST(DirectNifti, BytesDoNotDependOnTheThreadCount) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({128, 128, 80});
  const Volume<float> v = testing::random_volume(g, 3, -3, 3, false);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  write_displacement_field(dir.file("one.nii.gz"), v);
  omp_set_num_threads(std::max(3, threads));
  write_displacement_field(dir.file("many.nii.gz"), v);
  omp_set_num_threads(threads);
  EXPECT_TRUE(read_bytes(dir.file("one.nii.gz")) == read_bytes(dir.file("many.nii.gz")));
}

TEST(DirectNifti, CompressionLevels) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({64, 64, 32});
  const Volume<float> v = testing::random_volume(g, 1, 0, 100, true);
  const int before = compression_level();
  std::size_t previous = 0;
  for (int level : {0, 1, 6, 12}) {
    set_compression_level(level);
    const std::string path = dir.file("l" + std::to_string(level) + ".nii.gz");
    write_image(path, v);
    EXPECT_TRUE(testing::same_voxels(read_image(path).voxels, v)) << level;
    const std::size_t size = read_bytes(path).size();
    if (level == 0) {
      EXPECT_GT(size, std::size_t(v.bytes())) << "level 0 stores";
    }
    if (previous != 0) {
      EXPECT_LE(size, previous) << "level " << level;
    }
    previous = size;
  }
  set_compression_level(before);
  EXPECT_TRUE(testing::throws_error([] { set_compression_level(13); }, ErrorKind::InvalidArgument,
                                    "compression level", "outside 0-12"));
  EXPECT_TRUE(testing::throws_error([] { set_compression_level(-2); }, ErrorKind::InvalidArgument,
                                    "compression level", "outside 0-12"));
  EXPECT_EQ(compression_level(), before);
}

TEST(DirectNifti, AutoCompressionStoresWhatDeflateCannotShrink) {
  // The default: members that deflate shrinks by less than 10% (random float mantissas, like a
  // displacement field's) are stored, the others deflated at level 1; either way the file is one
  // valid gzip stream with the same voxels, and the choice depends on the bytes only.
  ScratchDir dir;
  EXPECT_EQ(compression_level(), kCompressionAuto) << "auto is the default";
  const Geometry g = testing::oblique_geometry({128, 128, 96});  // 6 MiB: two members
  const Volume<float> noisy = testing::random_volume(g, 1, -3, 3, false);  // like a field (mm)
  Volume<float> masked = noisy.clone();  // zero outside a ball: compresses well
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i)
        if ((i - 64) * (i - 64) + (j - 64) * (j - 64) + (k - 48) * (k - 48) > 30 * 30) masked(i, j, k) = 0.f;
  const int before = compression_level();
  std::size_t sizes[2][2];  // [volume][auto, level 1]
  for (int level : {kCompressionAuto, 1}) {
    set_compression_level(level);
    for (int which = 0; which < 2; ++which) {
      const Volume<float>& v = which == 0 ? noisy : masked;
      const std::string path = dir.file("v" + std::to_string(which) + "l" + std::to_string(level) + ".nii.gz");
      write_image(path, v);
      EXPECT_TRUE(testing::same_voxels(read_image(path).voxels, v)) << which << " " << level;
      EXPECT_EQ(std::system(("gzip -t '" + path + "'").c_str()), 0) << path;
      sizes[which][level == 1] = read_bytes(path).size();
      if (level == kCompressionAuto) {  // the same bytes again
        write_image(path + ".again.nii.gz", v);
        EXPECT_EQ(read_bytes(path + ".again.nii.gz"), read_bytes(path));
      }
    }
  }
  set_compression_level(before);
  EXPECT_GT(sizes[0][0], std::size_t(noisy.bytes())) << "the noisy volume is stored";
  EXPECT_LT(sizes[0][1], std::size_t(noisy.bytes())) << "level 1 shrinks it a little";
  EXPECT_EQ(sizes[1][0], sizes[1][1]) << "the masked volume is deflated at level 1";
  EXPECT_LT(sizes[1][0], std::size_t(masked.bytes()) / 2);
}

TEST(DirectNifti, CorruptBlockFilesAreErrorsNotData) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({128, 100, 90});
  const Volume<float> v = testing::random_volume(g, 1, -1, 1, false);
  const std::string good = dir.file("good.nii.gz");
  write_image(good, v);
  const std::string bytes = read_bytes(good);
  const auto members = io_detail::find_block_members(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  ASSERT_GE(members.size(), 2u);
  // A flipped CRC byte in the second member's trailer.
  std::string crc = bytes;
  crc[members[1].offset + members[1].size - 8] ^= 0x5a;
  write_bytes(dir.file("crc.nii.gz"), crc);
  EXPECT_TRUE(testing::throws_error([&] { read_image(dir.file("crc.nii.gz")); }, ErrorKind::Io,
                                    dir.file("crc.nii.gz"), "CRC-32"));
  // A flipped byte inside the compressed data of the second member.
  std::string body = bytes;
  body[members[1].offset + members[1].size / 2] ^= 0x10;
  write_bytes(dir.file("body.nii.gz"), body);
  EXPECT_THROW(read_image(dir.file("body.nii.gz")), Error);
  // The last member cut off.
  write_bytes(dir.file("short.nii.gz"), bytes.substr(0, members.back().offset));
  EXPECT_THROW(read_image(dir.file("short.nii.gz")), Error);
  // Displacement fields take the same checks (their reader skips the separate completeness pass).
  write_displacement_field(dir.file("u.nii.gz"), testing::random_volume(g, 3, -2, 2, false));
  std::string field = read_bytes(dir.file("u.nii.gz"));
  const auto field_members =
      io_detail::find_block_members(reinterpret_cast<const unsigned char*>(field.data()), field.size());
  ASSERT_GE(field_members.size(), 2u);
  field[field_members[1].offset + field_members[1].size - 8] ^= 0x5a;
  write_bytes(dir.file("u_crc.nii.gz"), field);
  EXPECT_TRUE(testing::throws_error([&] { read_displacement_field(dir.file("u_crc.nii.gz")); },
                                    ErrorKind::Io, dir.file("u_crc.nii.gz"), "CRC-32"));
  write_bytes(dir.file("u_short.nii.gz"), field.substr(0, field_members.back().offset));
  EXPECT_THROW(read_displacement_field(dir.file("u_short.nii.gz")), Error);
}

TEST(DirectNifti, CorruptSingleMemberGzipIsAnError) {
  ScratchDir dir;
  const Geometry g = testing::oblique_geometry({40, 30, 20});
  const Volume<float> v = testing::random_volume(g, 1, -1, 1, false);
  const std::string good = dir.file("itk.nii.gz");
  itk_write(good, v, PixelType::Float32);
  std::string bytes = read_bytes(good);
  bytes[bytes.size() - 6] ^= 0x01;  // the CRC-32 in the trailer
  write_bytes(dir.file("crc.nii.gz"), bytes);
  EXPECT_THROW(read_image(dir.file("crc.nii.gz")), Error);
}

}  // namespace
}  // namespace gigareg
