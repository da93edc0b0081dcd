// Issue 18: malformed inputs that ITK reads without complaint (or crashes on), checked by gigareg
// before anything is used; failed or partial output sets; temporaries left by killed writers.
// Every malformed file is made here, at run time, from a valid one.
#include <gtest/gtest.h>
#include <itkAffineTransform.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <regex>

#include "gigareg/composite_transform.hpp"
#include "gigareg/io.hpp"
#include "gigareg/itk_adapters.hpp"
#include "io/io_internal.hpp"  // StagedFile: a writer killed half-way
#include "io_test_util.hpp"

using namespace gigareg;
using namespace gigareg::testing;
namespace fs = std::filesystem;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

/// A 6x5x8 int16 .nii with values 1..240 (no zero: data read from the wrong place shows).
std::string int16_volume_bytes(const nifti_1_header& h) {
  std::string data;
  for (int i = 0; i < 6 * 5 * 8; ++i) {
    const std::int16_t v = std::int16_t(3 * i + 1);
    data.append(reinterpret_cast<const char*>(&v), 2);
  }
  return nifti_file(h, data);
}

nifti_1_header int16_header() { return nifti_header(6, 5, 8, NIFTI_TYPE_INT16, 16); }

std::string gzip(const std::string& bytes) {
  std::string out(compressBound(uLong(bytes.size())) + 64, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: a gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = uInt(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

/// The planes of read_image_slab, in slabs of `nz`, against read_image: what a distributed run's
/// ranks read against what one process reads.
::testing::AssertionResult slabs_match_whole(const std::string& path, index_t nz) {
  const Image whole = read_image(path);
  const Geometry& g = whole.voxels.geometry();
  const index_t plane = g.size.x * g.size.y;
  for (index_t z0 = 0; z0 < g.size.z; z0 += nz) {
    const index_t n = std::min(nz, g.size.z - z0);
    const Image slab = read_image_slab(path, z0, n);
    for (index_t i = 0; i < n * plane; ++i) {
      const float a = whole.voxels.data()[z0 * plane + i], b = slab.voxels.data()[i];
      if (std::memcmp(&a, &b, sizeof a) != 0)
        return ::testing::AssertionFailure() << path << ": voxel " << z0 * plane + i << " is " << a
                                             << " read whole but " << b << " read in slabs of " << nz;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Item 1: non-finite qform / sform reach vnl and abort the process.

TEST(IoHardening, NonFiniteSformOrQformIsAnErrorNotAnAbort) {
  ScratchDir dir;
  {
    nifti_1_header h = int16_header();
    h.sform_code = NIFTI_XFORM_SCANNER_ANAT;
    h.srow_x[0] = h.srow_y[1] = h.srow_z[2] = 1.0f;
    h.srow_x[0] = kNaN;  // byte 280 of the header
    const std::string path = dir.file("sform_nan.nii");
    write_bytes(path, int16_volume_bytes(h));
    EXPECT_TRUE(throws_error([&] { read_image_header(path); }, ErrorKind::InvalidInput, path, "srow"));
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "srow"));
    // The same inside a .nii.gz.
    const std::string gz = dir.file("sform_nan.nii.gz");
    write_bytes(gz, gzip(int16_volume_bytes(h)));
    EXPECT_TRUE(throws_error([&] { read_image(gz); }, ErrorKind::InvalidInput, gz, "srow"));
  }
  {
    nifti_1_header h = int16_header();
    h.quatern_c = std::numeric_limits<float>::infinity();
    const std::string path = dir.file("qform_inf.nii");
    write_bytes(path, int16_volume_bytes(h));
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "quatern"));
  }
  {
    // A NaN in a transform that is not used (code 0) is no reason to refuse the file.
    nifti_1_header h = int16_header();
    h.sform_code = 0;
    h.srow_x[0] = kNaN;
    const std::string path = dir.file("unused_sform_nan.nii");
    write_bytes(path, int16_volume_bytes(h));
    EXPECT_EQ(read_image(path).voxels.data()[5], 16.0f);
  }
}

// ------------------------------------------------------------------------------------------------
// Item 5: wrong data accepted as good.

TEST(IoHardening, GzipWithWrongChecksumIsCorrupt) {
  ScratchDir dir;
  // Large enough that ITK's header read does not reach the gzip trailer (a tiny file fails
  // ITK's format detection instead, which is also an error naming it).
  std::string data;
  std::mt19937 rng(3);
  for (int i = 0; i < 64 * 64 * 40; ++i) {
    const std::int16_t v = std::int16_t(rng() % 2000);
    data.append(reinterpret_cast<const char*>(&v), 2);
  }
  const std::string good = gzip(nifti_file(nifti_header(64, 64, 40, NIFTI_TYPE_INT16, 16), data));
  const std::string ok_path = dir.file("ok.nii.gz");
  write_bytes(ok_path, good);
  EXPECT_EQ(read_image(ok_path).voxels.data()[7], float(*reinterpret_cast<const std::int16_t*>(data.data() + 14)));
  // The CRC-32 in the trailer (the length still matches): ITK stops reading before it.
  std::string bad = good;
  bad[bad.size() - 8] = char(bad[bad.size() - 8] ^ 0x5a);
  const std::string path = dir.file("bad_crc.nii.gz");
  write_bytes(path, bad);
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::Io, path, "corrupt"));
  // A flipped bit in the compressed voxels: whatever zlib makes of it, not good data.
  std::string flipped = good;
  flipped[flipped.size() / 2] = char(flipped[flipped.size() / 2] ^ 0x01);
  const std::string path2 = dir.file("flipped.nii.gz");
  write_bytes(path2, flipped);
  EXPECT_TRUE(throws_error([&] { read_image(path2); }, ErrorKind::Io, path2, "corrupt"));
}

TEST(IoHardening, BitpixContradictingDatatype) {
  ScratchDir dir;
  nifti_1_header h = int16_header();
  h.datatype = NIFTI_TYPE_FLOAT64;  // bitpix stays 16
  const std::string path = dir.file("f64_bitpix16.nii");
  write_bytes(path, int16_volume_bytes(h));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "bitpix"));
  EXPECT_TRUE(throws_error([&] { read_image_header(path); }, ErrorKind::InvalidInput, path, "bitpix"));
}

TEST(IoHardening, MetaImageWithWrongCompressedSize) {
  ScratchDir dir;
  register_itk_io_factories();
  Geometry g;
  g.size = {16, 12, 10};
  Volume<float> v = random_volume(g, 1, -5, 5, false);
  const std::string zmha = dir.file("compressed.mha");
  auto writer = itk::ImageFileWriter<ItkScalarImage>::New();
  writer->SetFileName(zmha);
  writer->SetInput(to_itk_image(v));
  writer->SetUseCompression(true);
  writer->Update();
  ASSERT_TRUE(same_voxels(read_image(zmha).voxels, v));
  const std::string bytes = read_bytes(zmha);
  const std::smatch m = [&] {
    std::smatch r;
    std::regex_search(bytes, r, std::regex("CompressedDataSize = ([0-9]+)"));
    return r;
  }();
  ASSERT_FALSE(m.empty());
  const long long size = std::stoll(m[1].str());
  // Smaller than the stream (the file is long enough: the old size check passes).
  for (long long wrong : {size - 10, size / 2}) {
    const std::string path = dir.file("wrong_" + std::to_string(wrong) + ".mha");
    std::string patched = bytes;
    patched.replace(std::size_t(m.position(1)), std::size_t(m.length(1)), std::to_string(wrong));
    patched.append(std::string(std::size_t(std::max<long long>(0, std::to_string(size).size() - std::to_string(wrong).size())), '\0'));
    write_bytes(path, patched);
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::Io, path, "CompressedDataSize")) << wrong;
  }
}

TEST(IoHardening, SclSlopeOverflowingFloatIsAnError) {
  ScratchDir dir;
  nifti_1_header h = int16_header();
  h.scl_slope = 1e38f;  // 1e38 * 718 is beyond float32
  const std::string path = dir.file("slope.nii");
  write_bytes(path, int16_volume_bytes(h));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "infinite"));
  EXPECT_TRUE(throws_error([&] { read_image_slab(path, 2, 3); }, ErrorKind::InvalidInput, path, "infinite"));
  // Large but finite is fine.
  h.scl_slope = 1e30f;
  const std::string fine = dir.file("large.nii");
  write_bytes(fine, int16_volume_bytes(h));
  EXPECT_FLOAT_EQ(read_image(fine).voxels.data()[1], 4e30f);
}

// ------------------------------------------------------------------------------------------------
// Item 6: the planes a rank reads must be the planes one process reads, whatever the header.

TEST(IoHardening, OddHeadersReadTheSameInSlabsAsWhole) {
  ScratchDir dir;
  struct Case {
    const char* name;
    void (*patch)(nifti_1_header&);
  };
  const Case same[] = {
      {"vox_offset_0.nii", [](nifti_1_header& h) { h.vox_offset = 0.0f; }},
      {"scl_inter_nan.nii", [](nifti_1_header& h) { h.scl_inter = kNaN; }},
      {"scl_inter_nan_slope2.nii", [](nifti_1_header& h) { h.scl_slope = 2.0f; h.scl_inter = kNaN; }},
      {"scl_slope_nan.nii", [](nifti_1_header& h) { h.scl_slope = kNaN; h.scl_inter = 3.0f; }},
      {"scl_slope_inf.nii", [](nifti_1_header& h) { h.scl_slope = std::numeric_limits<float>::infinity(); }},
      {"plain.nii", [](nifti_1_header&) {}},
  };
  for (const Case& c : same) {
    SCOPED_TRACE(c.name);
    nifti_1_header h = int16_header();
    c.patch(h);
    const std::string path = dir.file(c.name);
    write_bytes(path, int16_volume_bytes(h));
    for (index_t nz : {1, 3, 5}) EXPECT_TRUE(slabs_match_whole(path, nz)) << nz;
  }
  // Offsets that are no file position: refused, whole or in slabs (a NaN one would be cast to an
  // integer; a negative one read in one process but failed on two ranks).
  const Case refused[] = {
      {"vox_offset_nan.nii", [](nifti_1_header& h) { h.vox_offset = kNaN; }},
      {"vox_offset_-352.nii", [](nifti_1_header& h) { h.vox_offset = -352.0f; }},
      {"vox_offset_352.5.nii", [](nifti_1_header& h) { h.vox_offset = 352.5f; }},
  };
  for (const Case& c : refused) {
    nifti_1_header h = int16_header();
    c.patch(h);
    const std::string path = dir.file(c.name);
    write_bytes(path, int16_volume_bytes(h));
    EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "vox_offset")) << c.name;
    EXPECT_TRUE(throws_error([&] { read_image_slab(path, 1, 2); }, ErrorKind::InvalidInput, path, "vox_offset"))
        << c.name;
  }
}

// ------------------------------------------------------------------------------------------------
// Item 3: a transform write that fails half-way (full disk; here a file size limit in a child)
// must not pass: ITK's .mat / .txt writers do not check their stream.

TEST(IoHardeningDeathTest, TransformWriteOnAFullDiskFails) {
  ScratchDir dir;
  Mat3d m = Mat3d::identity();
  m(0, 1) = 0.1;
  for (const char* name : {"a.mat", "a.txt"}) {
    const std::string path = dir.file(name);
    auto child = [&] {
      std::signal(SIGXFSZ, SIG_IGN);
      rlimit limit{};
      limit.rlim_cur = 16;  // a few bytes: the file is cut short
      limit.rlim_max = RLIM_INFINITY;
      setrlimit(RLIMIT_FSIZE, &limit);
      try {
        write_affine_transform(path, m, {1, 2, 3}, {4, 5, 6});
      } catch (const Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        std::_Exit(e.kind() == ErrorKind::Io && std::string(e.what()).find(path) != std::string::npos ? 0 : 2);
      }
      std::_Exit(1);
    };
    EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "") << name;
    EXPECT_TRUE(dir.entries().empty()) << name;
    write_affine_transform(path, m, {1, 2, 3}, {4, 5, 6});  // without the limit
    EXPECT_DOUBLE_EQ(read_affine_transform(path).matrix(0, 1), 0.1);
    std::filesystem::remove(path);
  }
}

// ------------------------------------------------------------------------------------------------
// Item 8: outputs as one set; names checked before the work; temporaries of killed writers.

TEST(IoHardening, OutputSetWritesAllOrNothing) {
  ScratchDir dir;
  Geometry g;
  g.size = {4, 4, 4};
  const Volume<float> v = random_volume(g, 1, 0, 10, true);
  {
    OutputSet set;
    write_affine_transform(dir.file("0GenericAffine.mat"), Mat3d::identity(), {0, 0, 0});
    write_image(dir.file("warped.nii.gz"), v);
    EXPECT_EQ(dir.entries().size(), 2u);  // the two temporaries, hidden
    for (const std::string& e : dir.entries()) EXPECT_EQ(e[0], '.') << e;
    // An error before commit (a later output that cannot be written): nothing remains.
    EXPECT_THROW(write_image(dir.file("qc.hdr"), v), Error);
  }
  EXPECT_TRUE(dir.entries().empty());
  {
    OutputSet set;
    write_affine_transform(dir.file("0GenericAffine.mat"), Mat3d::identity(), {0, 0, 0});
    {
      OutputSet inner;  // joins the outer set: its commit does nothing
      write_image(dir.file("warped.nii.gz"), v);
      inner.commit();
    }
    EXPECT_FALSE(fs::exists(dir.file("warped.nii.gz")));
    set.commit();
  }
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"0GenericAffine.mat", "warped.nii.gz"}));
  EXPECT_TRUE(same_voxels(read_image(dir.file("warped.nii.gz")).voxels, v));
}

TEST(IoHardening, OutputNamesAreCheckedBeforeTheWork) {
  ScratchDir dir;
  struct Case {
    std::string name;
    OutputKind kind;
    ErrorKind error;
    const char* needle;
  };
  const Case cases[] = {
      {"w.xyz", OutputKind::Image, ErrorKind::InvalidArgument, "'.xyz'"},
      {"w.hdr", OutputKind::Image, ErrorKind::InvalidArgument, "two-file"},
      {"w.img.gz", OutputKind::Image, ErrorKind::InvalidArgument, "two-file"},
      {"w", OutputKind::Image, ErrorKind::InvalidArgument, "no extension"},
      {"a.nii.gz", OutputKind::Transform, ErrorKind::InvalidArgument, ".mat"},
      {"qc.jpg", OutputKind::Png, ErrorKind::InvalidArgument, ".png"},
      {"c.mat", OutputKind::CompositeTransform, ErrorKind::InvalidArgument, ".h5"},
  };
  for (const Case& c : cases)
    EXPECT_TRUE(throws_error([&] { check_output_path(dir.file(c.name), c.kind); }, c.error, dir.file(c.name),
                             c.needle))
        << c.name;
  check_output_path(dir.file("sub/dir/w.nii.gz"), OutputKind::Image);  // creates the directory
  EXPECT_TRUE(fs::is_directory(dir.file("sub/dir")));
  EXPECT_TRUE(fs::is_empty(dir.file("sub/dir")));  // the probe is gone
  // A directory where no file can be created: read-only to this user, or (root ignores
  // permissions) /proc, where nobody creates files.
  std::string unwritable = "/proc/gigareg_qc.png";
  if (::geteuid() != 0) {
    fs::create_directory(dir.file("ro"));
    fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    unwritable = dir.file("ro/qc.png");
  }
  EXPECT_TRUE(throws_error([&] { check_output_path(unwritable, OutputKind::Png); }, ErrorKind::Io, unwritable,
                           "cannot create a file"));
  if (::geteuid() != 0) fs::permissions(dir.file("ro"), fs::perms::owner_all);
}

TEST(IoHardening, TemporariesOfKilledWritersAreRemovedByTheNextWrite) {
  ScratchDir dir;
  Geometry g;
  g.size = {4, 4, 4};
  const Volume<float> v = random_volume(g, 1, 0, 10, true);
  // A writer killed with SIGKILL while writing leaves its temporary (nothing can remove it then).
  const pid_t pid = ::fork();
  if (pid == 0) {
    io_detail::StagedFile staged(dir.file("warped.nii.gz"));
    write_bytes(staged.temp_path(), "partial");
    ::kill(::getpid(), SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(dir.entries().size(), 1u);
  const std::string left = dir.entries()[0];
  EXPECT_NE(left.find(".warped.tmp-"), std::string::npos) << left;
  // A temporary of a live process (this one's parent: pid 1 or the runner) of the same name, and
  // another file: both untouched.
  const std::string live = left.substr(0, left.find('-', left.find(".tmp-") + 5) + 1) +
                           std::to_string(::getppid()) + "-0.nii.gz";
  write_bytes(dir.file(live), "x");
  write_bytes(dir.file("other.nii.gz"), "y");
  write_image(dir.file("warped.nii.gz"), v);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{live, "other.nii.gz", "warped.nii.gz"}));
}

TEST(IoHardeningDeathTest, SignalsRemoveTemporariesInProgress) {
  ScratchDir dir;
  auto child = [&] {
    install_temporary_cleanup_handlers();
    io_detail::StagedFile staged(dir.file("warp.nii.gz"));
    write_bytes(staged.temp_path(), "half of a warp");
    std::raise(SIGTERM);  // mpirun ending the job, or Ctrl-C (SIGINT)
    std::_Exit(3);
  };
  EXPECT_EXIT(child(), ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(IoHardening, TemporaryNamesAreUnpredictable) {
  // Item 10: `.name.tmp-<host>-<pid>-<token>.ext` with 64 random bits as the token: no link can be
  // planted under the next name in advance (a counter made it predictable).
  ScratchDir dir;
  auto token_of = [](const std::string& temp) {
    const std::string name = fs::path(temp).filename().string();
    const std::size_t end = name.size() - std::string(".nii").size();
    return name.substr(name.rfind('-', end) + 1, end - name.rfind('-', end) - 1);
  };
  std::vector<std::string> tokens;
  for (int i = 0; i < 4; ++i) {
    io_detail::StagedFile staged(dir.file("x.nii"));
    tokens.push_back(token_of(staged.temp_path()));
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_TRUE(std::regex_match(tokens[i], std::regex("[0-9a-f]{16}"))) << tokens[i];
    for (std::size_t j = 0; j < i; ++j) EXPECT_NE(tokens[i], tokens[j]);
  }
}

TEST(IoHardening, ATemporaryReplacedWhileWrittenIsNotMovedIntoPlace) {
  // Item 10: ITK's writers open the temporary by name. Whoever can write into the directory could
  // swap it for a link or a file of theirs meanwhile; the output must not become that.
  ScratchDir dir;
  const std::string target = dir.file("target.txt");
  write_bytes(target, "keep");
  const std::string out = dir.file("x.nii");
  for (const bool link : {true, false}) {
    io_detail::StagedFile staged(out);
    write_bytes(staged.temp_path(), "written by gigareg");
    fs::remove(staged.temp_path());
    if (link)
      fs::create_symlink(target, staged.temp_path());
    else
      write_bytes(staged.temp_path(), "planted");
    EXPECT_TRUE(throws_error([&] { staged.commit(); }, ErrorKind::Io, out,
                             link ? "replaced by a symbolic link" : "replaced by another file"));
    EXPECT_FALSE(fs::exists(fs::symlink_status(out)));
  }
  EXPECT_EQ(read_bytes(target), "keep");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"target.txt"});  // the swapped temporaries removed
}

TEST(IoHardening, WritersNeverWriteThroughALinkSwappedInBeforeTheyOpen) {
  // The window before the test above: the temporary swapped for a link to someone else's file
  // after StagedFile made it and before ITK's writer opens it by name. ITK's writers open
  // io_detail::WriterName's path, which leads to the file made (through /proc/self/fd), so the
  // link's target is never written; commit() then refuses the swapped name.
  register_itk_io_factories();
  ScratchDir dir;
  const std::string target = dir.file("target.txt");
  write_bytes(target, "keep");
  auto swap_for_link = [&](const io_detail::StagedFile& staged) {
    fs::remove(staged.temp_path());
    fs::create_symlink(target, staged.temp_path());
  };
  for (const char* name : {"t.mat", "t.txt", "t.h5"}) {
    io_detail::StagedFile staged(dir.file(name));
    swap_for_link(staged);
    auto affine = itk::AffineTransform<double, 3>::New();
    if (std::string(name) == "t.h5") {
      // HDF5 opens the name it is given (the held file) but also resolves its links to record the
      // file's location, and refuses when they lead elsewhere: the write fails, nothing is written
      // through the link.
      EXPECT_TRUE(throws_error([&] { io_detail::write_itk_transform(staged, affine); }, ErrorKind::Io,
                               dir.file(name), "HDF5 failed to create the file"));
      EXPECT_EQ(read_bytes(target), "keep");
      continue;
    }
    io_detail::write_itk_transform(staged, affine);
    {
      // What the writer wrote reached the held temporary: read back through the writer's name.
      const io_detail::WriterName written = staged.writer_name();
      EXPECT_GT(fs::file_size(written.path()), 0u) << name;
      EXPECT_NE(written.path(), staged.temp_path()) << "no private name on this machine";
    }
    EXPECT_TRUE(throws_error([&] { staged.commit(); }, ErrorKind::Io, dir.file(name), "replaced by a symbolic link"))
        << name;
    EXPECT_EQ(read_bytes(target), "keep") << name;
  }
  // ITK's image writers (src/io/image_io.cpp hands them the same name), by the extension the
  // private name keeps: MetaImage, and NIfTI compressed through zlib.
  using Image = itk::Image<float, 3>;
  auto image = Image::New();
  image->SetRegions(Image::SizeType{{3, 4, 5}});
  image->Allocate();
  image->FillBuffer(1.5f);
  for (const char* name : {"i.mha", "i.nii.gz"}) {
    io_detail::StagedFile staged(dir.file(name));
    swap_for_link(staged);
    {
      const io_detail::WriterName written = staged.writer_name();
      auto writer = itk::ImageFileWriter<Image>::New();
      writer->SetFileName(written.path());
      writer->SetInput(image);
      writer->Update();
      EXPECT_GT(fs::file_size(written.path()), 60u) << name;
    }
    EXPECT_TRUE(throws_error([&] { staged.commit(); }, ErrorKind::Io, dir.file(name), "replaced by a symbolic link"))
        << name;
  }
  EXPECT_EQ(read_bytes(target), "keep");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"target.txt"});
}

TEST(IoHardening, LongNamesAndUnwritableDirectoriesSayWhatIsWrong) {
  // Item 11: a valid name of 255 bytes (the temporary's name is cut to fit the file system's
  // limit), a name beyond the limit, and a directory where no file can be created (the system's
  // reason, not "cannot be read back (disk full?)").
  ScratchDir dir;
  Geometry g;
  g.size = {4, 4, 4};
  const Volume<float> v = random_volume(g, 1, 0, 10, true);
  const std::string longest = dir.file(std::string(248, 'a') + ".nii.gz");  // 255 bytes
  write_image(longest, v);
  EXPECT_TRUE(same_voxels(read_image(longest).voxels, v));
  EXPECT_EQ(dir.entries().size(), 1u);
  const std::string too_long = dir.file(std::string(250, 'b') + ".nii.gz");
  EXPECT_TRUE(throws_error([&] { write_image(too_long, v); }, ErrorKind::Io, too_long, "allows at most 255"));
  EXPECT_EQ(dir.entries().size(), 1u);
  // Read-only to this user; root ignores permissions, but not in /sys.
  std::string unwritable = "/sys/gigareg_test.nii.gz";
  if (::geteuid() != 0) {
    fs::create_directory(dir.file("ro"));
    fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    unwritable = dir.file("ro/w.nii.gz");
  } else if (!fs::is_directory("/sys")) {
    GTEST_SKIP() << "running as root without /sys: no unwritable directory to try";
  }
  EXPECT_TRUE(throws_error([&] { write_image(unwritable, v); }, ErrorKind::Io, unwritable, std::strerror(EACCES)));
  if (::geteuid() != 0) fs::permissions(dir.file("ro"), fs::perms::owner_all);
}

// ------------------------------------------------------------------------------------------------
// Found by tests/malformed/malformed_inputs.py (each also one of its cases).

TEST(IoHardening, MalformedHeadersFoundByTheGenerator) {
  ScratchDir dir;
  const std::string good = int16_volume_bytes(int16_header());
  struct Case {
    std::string name, bytes, needle;
  };
  nifti_1_header zero_axis = int16_header();
  zero_axis.dim[2] = 0;  // ITK read it as 1 and took another grid's data
  nifti_1_header bad_size = int16_header();
  bad_size.sizeof_hdr = 347;  // read as NIfTI-1 all the same
  const std::string meta_data(6 * 5 * 8 * 4, '\0');
  auto meta = [&](const std::string& fields) {
    return "ObjectType = Image\n" + fields + "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n" + meta_data;
  };
  std::string cut_trailer = gzip(good);
  cut_trailer.resize(cut_trailer.size() - 4);  // all the data, no CRC-32 and length
  const Case cases[] = {
      {"zero_axis.nii", nifti_file(zero_axis, good.substr(352)), "dim[2] is 0"},
      {"sizeof_hdr.nii", nifti_file(bad_size, good.substr(352)), "sizeof_hdr is 347"},
      {"ndims.mha", meta("NDims = -1\nDimSize = 6 5 8\n"), "NDims"},  // MetaIO hung
      {"dimsize.mha", meta("NDims = 3\nDimSize = 6 5 7.5\n"), "DimSize"},
      {"cut_trailer.nii.gz", cut_trailer, "truncated"},
  };
  for (const Case& c : cases) {
    write_bytes(dir.file(c.name), c.bytes);
    EXPECT_TRUE(throws_error([&] { read_image(dir.file(c.name)); }, c.name.find(".gz") != std::string::npos
                                                                       ? ErrorKind::Io
                                                                       : ErrorKind::InvalidInput,
                             dir.file(c.name), c.needle))
        << c.name;
  }
}

using namespace std::string_literals;  // "..."s keeps the NUL bytes of a fuzzer's input

TEST(IoHardening, TransformsAndWarpsFoundByTheGenerator) {
  ScratchDir dir;
  // A .mat cut inside its second variable: ITK read the missing fixed parameters from nowhere.
  const std::string mat = dir.file("a.mat");
  write_affine_transform(mat, Mat3d::identity(), {1, 2, 3});
  std::string bytes = read_bytes(mat);
  write_bytes(dir.file("cut.mat"), bytes.substr(0, bytes.size() - 5));
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("cut.mat")); }, ErrorKind::InvalidInput,
                           dir.file("cut.mat"), "truncated"));
  // A text transform with too few parameters: ITK read beyond its array.
  write_bytes(dir.file("few.txt"),
              "#Insight Transform File V1.0\n#Transform 0\nTransform: Euler3DTransform_double_3_3\n"
              "Parameters: 0.1\nFixedParameters: 0 0 0\n");
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("few.txt")); }, ErrorKind::InvalidInput,
                           dir.file("few.txt"), "Parameters holds 1 numbers"));
  // Six words of which the first is not a number (found by fuzz_transform): ITK read no value and
  // Euler3DTransform::SetParameters read six from an empty array.
  write_bytes(dir.file("garbled.txt"),
              "#Insight Transforme V1.0\n#Transform 0\nTransform: Euler3DTransform_double_3_3\n"
              "Parameters:\x01\0\0d 0.1 0 0\x01\x10 2 3\nFixedParameters:0 0 0 0\n"s);
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("garbled.txt")); }, ErrorKind::InvalidInput,
                           dir.file("garbled.txt"), "Parameters holds 0 numbers"));
  // Indented keys are ITK's keys too, and parameters with no transform before them are refused.
  write_bytes(dir.file("indented.txt"),
              "#Insight Transform File V1.0\n  Transform: Euler3DTransform_double_3_3\n"
              "\tParameters : 0.1 0 0\nFixedParameters: 0 0 0\n");
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("indented.txt")); }, ErrorKind::InvalidInput,
                           dir.file("indented.txt"), "Parameters holds 3 numbers"));
  // Transforms of other dimensions and of no matrix (the clean-clone CI's fuzz_transform found a
  // Rigid2DTransform given too few parameters: ITK's SetParameters read from a null array). A
  // transform read by `apply -t` may be any of them before gigareg refuses its dimension.
  const struct {
    const char* name;
    const char* file;
    const char* needle;
  } wrong_counts[] = {
      {"rigid2d.txt", "Transform: Rigid2DTransform_double_2_2\nParameters: 1\nFixedParameters: 0 0\n",
       "Parameters holds 1 numbers"},
      {"affine4d.txt", "Transform: AffineTransform_float_4_4\nParameters: 1 0 0 0\nFixedParameters: 0 0 0 0\n",
       "Parameters holds 4 numbers"},
      {"translation.txt", "Transform: TranslationTransform_double_3_3\nParameters: 1 2\nFixedParameters:\n",
       "Parameters holds 2 numbers"},
      {"perspective.txt", "Transform: Rigid3DPerspectiveTransform_double_3_2\nParameters:\nFixedParameters:\n",
       "Parameters holds 0 numbers"},
      {"euler2d_fixed.txt", "Transform: Euler2DTransform_double_2_2\nParameters: 0 1 2\nFixedParameters: 0\n",
       "FixedParameters holds 1 numbers"},
  };
  for (const auto& c : wrong_counts) {
    write_bytes(dir.file(c.name), std::string("#Insight Transform File V1.0\n#Transform 0\n") + c.file);
    EXPECT_TRUE(throws_error([&] { read_transform_chain(dir.file(c.name)); }, ErrorKind::InvalidInput,
                             dir.file(c.name), c.needle))
        << c.name;
  }
  write_bytes(dir.file("orphan.txt"), "#Insight Transform File V1.0\nFixedParameters: 0 0 0\nParameters: 1 0 0\n");
  EXPECT_TRUE(throws_error([&] { read_affine_transform(dir.file("orphan.txt")); }, ErrorKind::InvalidInput,
                           dir.file("orphan.txt"), "before any Transform line"));
  // A warp with a NaN displacement: every voxel it touched became NaN without an error.
  Geometry g;
  g.size = {4, 4, 4};
  DisplacementField field = random_volume(g, 3, -1, 1, true);
  field.data()[70] = kNaN;
  write_displacement_field(dir.file("w.nii.gz"), field);
  EXPECT_TRUE(throws_error([&] { read_displacement_field(dir.file("w.nii.gz")); }, ErrorKind::InvalidInput,
                           dir.file("w.nii.gz"), "NaN"));
}
