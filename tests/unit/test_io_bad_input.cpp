// Bad files and failed writes: every problem is a gigareg::Error of a sensible kind whose message
// names the file and says what is wrong; header problems are caught before voxels are allocated;
// a failed write leaves nothing under the final name (and no temporary).
#include <gtest/gtest.h>
#include <itkImageFileWriter.h>
#include <itkTransformFileWriter.h>
#include <itkTranslationTransform.h>
#include <itkAffineTransform.h>

#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "io_test_util.hpp"

using namespace gigareg;
using namespace gigareg::testing;

namespace {

/// A MetaImage (.mha) with the header fields given as text and `data` appended.
std::string mha(const std::string& spacing, const std::string& matrix, const std::string& dims,
                const std::string& data, const std::string& offset = "0 0 0") {
  std::ostringstream s;
  s << "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
    << "CompressedData = False\nTransformMatrix = " << matrix << "\nOffset = " << offset
    << "\nCenterOfRotation = 0 0 0\nElementSpacing = " << spacing << "\nDimSize = " << dims
    << "\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    << data;
  return s.str();
}

const std::string kIdentity = "1 0 0 0 1 0 0 0 1";

std::string nrrd(const std::string& sizes, const std::string& directions, const std::string& data) {
  std::ostringstream s;
  s << "NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: " << sizes
    << "\nspace directions: " << directions
    << "\nkinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n\n"
    << data;
  return s.str();
}

Volume<float> small_volume(Index3 size = {4, 4, 4}) {
  Geometry g;
  g.size = size;
  return random_volume(g, 1, 0, 100, true);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Files that cannot be read at all

TEST(IoBadInput, MissingFile) {
  ScratchDir dir;
  const std::string path = dir.file("nope.nii.gz");
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::Io, path, "does not exist"));
  EXPECT_TRUE(throws_error([&] { read_image_header(path); }, ErrorKind::Io, path, "does not exist"));
  EXPECT_TRUE(throws_error([&] { read_displacement_field(path); }, ErrorKind::Io, path));
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("t.mat")); }, ErrorKind::Io,
                           dir.file("t.mat"), "does not exist"));
}

TEST(IoBadInput, DirectoryInsteadOfFile) {
  ScratchDir dir;
  const std::string path = dir.file("looks_like.nii.gz");
  std::filesystem::create_directory(path);
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::Io, path, "directory"));
}

TEST(IoBadInput, TextFileWithImageExtension) {
  ScratchDir dir;
  for (const char* name : {"notes.nii", "notes.nii.gz", "notes.nrrd", "notes.mha", "empty.nii"}) {
    const std::string path = dir.file(name);
    write_bytes(path, std::string(name) == "empty.nii" ? "" : "this is not an image\n");
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path)) << name;
  }
  const std::string mat = dir.file("garbage.mat");
  write_bytes(mat, "not a matlab file at all");
  EXPECT_TRUE(throws_error([&] { read_affine_transform(mat); }, ErrorKind::InvalidInput, mat));
}

TEST(IoBadInput, TruncatedFiles) {
  ScratchDir dir;
  const Volume<float> v = random_volume(oblique_geometry({32, 32, 16}), 1, -1, 1, false);
  for (const char* ext : {".nii", ".nii.gz", ".nrrd", ".mha"}) {
    SCOPED_TRACE(ext);
    const std::string whole = dir.file(std::string("whole") + ext);
    write_image(whole, v);
    const std::string bytes = read_bytes(whole);
    const std::string cut = dir.file(std::string("cut") + ext);
    write_bytes(cut, bytes.substr(0, bytes.size() / 2));
    EXPECT_TRUE(throws_error([&] { read_image(cut); }, ErrorKind::Io, cut, "truncated"));
  }
  // A zlib-compressed MetaImage (gigareg writes .mha uncompressed; ITK can compress it).
  const std::string zmha = dir.file("compressed.mha");
  Volume<float> copy = v.clone();
  auto writer = itk::ImageFileWriter<ItkScalarImage>::New();
  writer->SetFileName(zmha);
  writer->SetInput(to_itk_image(copy));
  writer->SetUseCompression(true);
  writer->Update();
  EXPECT_TRUE(same_voxels(read_image(zmha).voxels, v));
  const std::string bytes = read_bytes(zmha);
  const std::string cut = dir.file("compressed_cut.mha");
  write_bytes(cut, bytes.substr(0, bytes.size() * 2 / 3));
  EXPECT_TRUE(throws_error([&] { read_image(cut); }, ErrorKind::Io, cut, "truncated"));
  // A displacement field cut short.
  const std::string warp = dir.file("warp.nii.gz");
  write_displacement_field(warp, random_volume(oblique_geometry({16, 16, 16}), 3, -1, 1, false));
  const std::string warp_bytes = read_bytes(warp);
  const std::string warp_cut = dir.file("warp_cut.nii.gz");
  write_bytes(warp_cut, warp_bytes.substr(0, warp_bytes.size() - 100));
  EXPECT_TRUE(throws_error([&] { read_displacement_field(warp_cut); }, ErrorKind::Io, warp_cut, "truncated"));
}

// ------------------------------------------------------------------------------------------------
// Readable files that are not scalar 3-D images

TEST(IoBadInput, FourDImageWithSeveralVolumes) {
  ScratchDir dir;
  register_itk_io_factories();
  using Image4 = itk::Image<float, 4>;
  auto image = Image4::New();
  Image4::SizeType size{{4, 3, 2, 2}};
  image->SetRegions(size);
  image->Allocate();
  image->FillBuffer(1.0f);
  const std::string path = dir.file("series.nii.gz");
  auto writer = itk::ImageFileWriter<Image4>::New();
  writer->SetFileName(path);
  writer->SetInput(image);
  writer->Update();

  const ImageHeader h = read_image_header(path);
  EXPECT_EQ(h.dimensions, 4);
  EXPECT_EQ(h.volumes, 2);
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "2 volumes"));
  EXPECT_TRUE(throws_error([&] { read_displacement_field(path); }, ErrorKind::InvalidInput, path));

  // A 4-D file holding a single volume is a 3-D image.
  Image4::SizeType one{{4, 3, 2, 1}};
  image->SetRegions(one);
  image->Allocate();
  image->FillBuffer(2.0f);
  const std::string single = dir.file("single.nii.gz");
  writer->SetFileName(single);
  writer->SetInput(image);
  writer->Update();
  const Image img = read_image(single);
  EXPECT_EQ(img.voxels.geometry().size, (Index3{4, 3, 2}));
  EXPECT_EQ(img.voxels.data()[23], 2.0f);
  EXPECT_TRUE(same_geometry(img.voxels.geometry(), geometry_of(*itk_read_float(single))));
}

TEST(IoBadInput, VectorWhereScalarExpectedAndBack) {
  ScratchDir dir;
  const Geometry g = oblique_geometry({4, 3, 2});
  const std::string warp = dir.file("warp.nii.gz");
  write_displacement_field(warp, random_volume(g, 3, -1, 1, false));
  EXPECT_TRUE(throws_error([&] { read_image(warp); }, ErrorKind::InvalidInput, warp, "3 components"));

  const std::string scalar = dir.file("scalar.nii.gz");
  write_image(scalar, small_volume());
  EXPECT_TRUE(throws_error([&] { read_displacement_field(scalar); }, ErrorKind::InvalidInput,
                           scalar, "1 component"));
}

// ------------------------------------------------------------------------------------------------
// Headers with unusable geometry

TEST(IoBadInput, ZeroNegativeAndNaNSpacing) {
  ScratchDir dir;
  const std::string data(8, '\1');
  // Values that ITK's parsers hand over, caught by gigareg's geometry check.
  const struct {
    const char* name;
    const char* spacing;
    const char* needle;
  } cases[] = {{"zero.mha", "0 1 1", "spacing along axis 0"},
               {"negative.mha", "1 -2 1", "spacing along axis 1"}};
  for (const auto& c : cases) {
    const std::string path = dir.file(c.name);
    write_bytes(path, mha(c.spacing, kIdentity, "2 2 2", data));
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, c.needle))
        << c.name;
  }
  // NIfTI without qform/sform: a negative pixdim reaches us as a negative spacing.
  nifti_1_header h = nifti_header(2, 2, 2, NIFTI_TYPE_UINT8, 8);
  h.qform_code = 0;
  h.pixdim[3] = -2.0f;
  const std::string nii = dir.file("negative_pixdim.nii");
  write_bytes(nii, nifti_file(h, data));
  EXPECT_TRUE(throws_error([&] { read_image(nii); }, ErrorKind::InvalidInput, nii, "spacing along axis 2"));

  // Non-finite numbers: ITK's MetaImage and NRRD parsers reject them first; the error still names
  // the file and says the header is unreadable.
  const std::string nan_mha = dir.file("nan.mha");
  write_bytes(nan_mha, mha("1 1 nan", kIdentity, "2 2 2", data));
  EXPECT_TRUE(throws_error([&] { read_image(nan_mha); }, ErrorKind::InvalidInput, nan_mha, "header"));
  const std::string nan_nrrd = dir.file("nan.nrrd");
  write_bytes(nan_nrrd, nrrd("2 2 2", "(nan,0,0) (0,1,0) (0,0,1)", data));
  EXPECT_TRUE(throws_error([&] { read_image(nan_nrrd); }, ErrorKind::InvalidInput, nan_nrrd, "header"));
  const std::string inf_origin = dir.file("inf_origin.mha");
  write_bytes(inf_origin, mha("1 1 1", kIdentity, "2 2 2", data, "0 1e999 0"));
  EXPECT_TRUE(throws_error([&] { read_image(inf_origin); }, ErrorKind::InvalidInput, inf_origin, "header"));
}

TEST(IoBadInput, NiftiLibraryRepairsZeroAndNaNPixdimAsItkDoes) {
  // The NIfTI library replaces a zero or NaN pixdim by 1 before ITK (or gigareg) sees it; gigareg
  // reads what ITK's reader reads.
  ScratchDir dir;
  for (float bad : {0.0f, std::numeric_limits<float>::quiet_NaN()}) {
    nifti_1_header h = nifti_header(2, 2, 2, NIFTI_TYPE_UINT8, 8);
    h.qform_code = 0;
    h.pixdim[2] = bad;
    const std::string nii = dir.file("pixdim.nii");
    write_bytes(nii, nifti_file(h, std::string(8, '\1')));
    const Image img = read_image(nii);
    EXPECT_EQ(img.voxels.geometry().spacing.y, 1.0);
    EXPECT_TRUE(same_geometry(img.voxels.geometry(), geometry_of(*itk_read_float(nii))));
  }
}

TEST(IoBadInput, SingularDirectionMatrix) {
  ScratchDir dir;
  const std::string data(8, '\1');
  // Two index axes along the same physical direction.
  const std::string path = dir.file("singular.mha");
  write_bytes(path, mha("1 1 1", "1 0 0 1 0 0 0 0 1", "2 2 2", data));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "singular"));
  // NRRD: a zero space direction (ITK derives a zero spacing from it, or a singular direction).
  const std::string nrrd_path = dir.file("degenerate.nrrd");
  write_bytes(nrrd_path, nrrd("2 2 2", "(1,0,0) (0,1,0) (0,0,0)", data));
  EXPECT_TRUE(throws_error([&] { read_image(nrrd_path); }, ErrorKind::InvalidInput, nrrd_path));
  const std::string nrrd_dup = dir.file("parallel.nrrd");
  write_bytes(nrrd_dup, nrrd("2 2 2", "(1,0,0) (0,1,0) (0,2,0)", data));
  EXPECT_TRUE(throws_error([&] { read_image(nrrd_dup); }, ErrorKind::InvalidInput, nrrd_dup, "singular"));
}

// ------------------------------------------------------------------------------------------------
// Sizes: checked from the header, before any allocation

TEST(IoBadInput, VoxelCountOverflowing64Bits) {
  ScratchDir dir;
  // 3e6^3 = 2.7e19 voxels > 2^63.
  const std::string path = dir.file("huge.mha");
  write_bytes(path, mha("1 1 1", kIdentity, "3000000 3000000 3000000", ""));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "overflows 64 bits"));
  EXPECT_TRUE(throws_error([&] { read_image_header(path); }, ErrorKind::InvalidInput, path, "overflows"));
  // NRRD's own parser refuses such sizes before ITK hands them over.
  const std::string nrrd_path = dir.file("huge.nrrd");
  write_bytes(nrrd_path, nrrd("3000000000 3000000000 3000000000", "(1,0,0) (0,1,0) (0,0,1)", ""));
  EXPECT_TRUE(throws_error([&] { read_image(nrrd_path); }, ErrorKind::InvalidInput, nrrd_path, "too large"));
}

TEST(IoBadInput, MoreBytesThanMemory) {
  ScratchDir dir;
  // 30000^3 float32 voxels = 108 TB, announced by a 352-byte file.
  nifti_1_header h = nifti_header(30000, 30000, 30000, NIFTI_TYPE_FLOAT32, 32);
  const std::string nii = dir.file("huge.nii");
  write_bytes(nii, nifti_file(h, ""));
  EXPECT_TRUE(throws_error([&] { read_image(nii); }, ErrorKind::OutOfMemory, nii, "available"));
  const std::string path = dir.file("huge.mha");
  write_bytes(path, mha("1 1 1", kIdentity, "100000 100000 100000", ""));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::OutOfMemory, path, "available"));
  // The header alone is fine to read.
  EXPECT_EQ(read_image_header(nii).geometry.size, (Index3{30000, 30000, 30000}));
}

// ------------------------------------------------------------------------------------------------
// Writes that fail leave nothing behind

TEST(IoBadWrite, MissingDirectory) {
  ScratchDir dir;
  const std::string path = dir.file("no/such/dir/out.nii.gz");
  EXPECT_TRUE(throws_error([&] { write_image(path, small_volume()); }, ErrorKind::Io, path, "does not exist"));
  EXPECT_TRUE(throws_error([&] { write_affine_transform(dir.file("no/t.mat"), Mat3d::identity(), {0, 0, 0}); },
                           ErrorKind::Io, dir.file("no/t.mat"), "does not exist"));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(IoBadWrite, UnsupportedOrTwoFileExtensions) {
  ScratchDir dir;
  const Volume<float> v = small_volume();
  for (const char* name : {"out.xyz", "out", "out.mhd", "out.nhdr", "out.hdr", "volume.png"}) {
    const std::string path = dir.file(name);
    EXPECT_TRUE(throws_error([&] { write_image(path, v); }, ErrorKind::InvalidArgument, path)) << name;
  }
  const std::string t = dir.file("t.nii.gz");
  EXPECT_TRUE(throws_error([&] { write_affine_transform(t, Mat3d::identity(), {0, 0, 0}); },
                           ErrorKind::InvalidArgument, t, "extension"));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(IoBadWrite, FinalNameIsADirectory) {
  ScratchDir dir;
  const std::string path = dir.file("taken.nii.gz");
  std::filesystem::create_directory(path);
  EXPECT_TRUE(throws_error([&] { write_image(path, small_volume()); }, ErrorKind::Io, path, "directory"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken.nii.gz"});
}

// In a child process: limits files to 100 kB, writes, and returns 0 if the write failed with an
// Io error naming the path.
int write_with_file_size_limit(const std::string& path, const Volume<float>& v) {
  std::signal(SIGXFSZ, SIG_IGN);  // writes past the limit fail with EFBIG instead of a signal
  rlimit limit{};
  limit.rlim_cur = 100000;
  limit.rlim_max = RLIM_INFINITY;
  setrlimit(RLIMIT_FSIZE, &limit);
  try {
    write_image(path, v);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return e.kind() == ErrorKind::Io && std::string(e.what()).find(path) != std::string::npos ? 0 : 2;
  }
  return 1;
}

// A write that fails half-way (here: the file size limit, as a full disk would): ITK's NIfTI and
// MetaImage writers return as if all went well; gigareg checks the temporary, removes it, and
// throws. Run in a child process so that the limit does not touch the test runner.
TEST(IoBadWriteDeathTest, WriteFailingHalfWayLeavesNothing) {
  ScratchDir dir;
  Geometry g;
  g.size = {64, 64, 32};  // 512 KiB of float32, above the limit below
  const Volume<float> v = random_volume(g, 1, -1, 1, false);
  for (const char* name : {"big.nii", "big.nii.gz", "big.mha", "big.nrrd"}) {
    const std::string path = dir.file(name);
    EXPECT_EXIT(std::_Exit(write_with_file_size_limit(path, v)), ::testing::ExitedWithCode(0), "")
        << name;
    EXPECT_TRUE(dir.entries().empty()) << name;
  }
}

TEST(IoBadWrite, FailedWriteKeepsThePreviousFile) {
  ScratchDir dir;
  const std::string path = dir.file("labels.nii.gz");
  const Volume<float> good = small_volume();
  write_image(path, good, PixelType::UInt8);
  const std::string before = read_bytes(path);
  Volume<float> bad = good.clone();
  bad.data()[7] = 0.5f;  // not a label
  EXPECT_TRUE(throws_error([&] { write_image(path, bad, PixelType::UInt8); },
                           ErrorKind::InvalidArgument, path, "not an integer"));
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"labels.nii.gz"});
}

TEST(IoBadWrite, WrongComponentsOrGeometry) {
  ScratchDir dir;
  Geometry g;
  g.size = {3, 3, 3};
  const std::string path = dir.file("x.nii.gz");
  EXPECT_TRUE(throws_error([&] { write_image(path, random_volume(g, 3, 0, 1, false)); },
                           ErrorKind::InvalidArgument, path, "component"));
  EXPECT_TRUE(throws_error([&] { write_displacement_field(path, random_volume(g, 1, 0, 1, false)); },
                           ErrorKind::InvalidArgument, path, "component"));
  Geometry flat = g;
  flat.direction = Mat3d{{1, 0, 0, 1, 0, 0, 0, 0, 1}};
  EXPECT_TRUE(throws_error([&] { write_image(path, random_volume(flat, 1, 0, 1, false)); },
                           ErrorKind::InvalidArgument, path, "singular"));
  EXPECT_TRUE(throws_error([&] { write_image(path, Volume<float>()); }, ErrorKind::InvalidArgument, path));
  Mat3d nan_m = Mat3d::identity();
  nan_m(1, 1) = std::numeric_limits<double>::quiet_NaN();
  const std::string t = dir.file("t.mat");
  EXPECT_TRUE(throws_error([&] { write_affine_transform(t, nan_m, {0, 0, 0}); },
                           ErrorKind::InvalidArgument, t, "not finite"));
  EXPECT_TRUE(dir.entries().empty());
}

// ------------------------------------------------------------------------------------------------
// Transform files that do not hold one affine

TEST(IoBadInput, TransformFilesWithoutOneAffine) {
  ScratchDir dir;
  register_itk_io_factories();
  {
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    const std::string path = dir.file("two.txt");
    writer->SetFileName(path);
    writer->AddTransform(itk::AffineTransform<double, 3>::New());
    writer->AddTransform(itk::AffineTransform<double, 3>::New());
    writer->Update();
    EXPECT_TRUE(throws_error([&] { read_affine_transform(path); }, ErrorKind::InvalidInput, path, "2 transforms"));
  }
  {
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    const std::string path = dir.file("shift.txt");
    writer->SetFileName(path);
    writer->SetInput(itk::TranslationTransform<double, 3>::New());
    writer->Update();
    EXPECT_TRUE(throws_error([&] { read_affine_transform(path); }, ErrorKind::InvalidInput, path,
                             "TranslationTransform"));
  }
  {
    auto writer = itk::TransformFileWriterTemplate<double>::New();
    const std::string path = dir.file("planar.mat");
    writer->SetFileName(path);
    writer->SetInput(itk::AffineTransform<double, 2>::New());
    writer->Update();
    EXPECT_TRUE(throws_error([&] { read_affine_transform(path); }, ErrorKind::InvalidInput, path));
  }
}
