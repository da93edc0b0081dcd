// Checks of a NIfTI header that must run before ITK parses it.
//
// ITK 5.2's NiftiImageIO (and the NIfTI library under it) trusts fields that a damaged or
// hand-made header can set to anything: a NaN in the sform reaches vnl and aborts the process,
// a NaN vox_offset is cast to an integer (undefined behaviour), a negative one is used as a file
// position, and a bitpix that does not match the datatype makes ITK read the wrong number of
// bytes per voxel and return zeros without an error. These fields are checked here, from the raw
// header bytes (inflated when the file is gzip), so that such files fail with a message naming
// the file and the field instead.

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {
namespace {

/// Up to 540 bytes (a NIfTI-2 header) of the file's content, inflated if it is gzip. A plain file
/// is read with one read(2) of exactly those bytes: a rank of a distributed run reads only its
/// slab of a .nii, and buffered readers would read kilobytes more.
std::string header_bytes(const std::string& path) {
  std::string buf(540, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t got = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  buf.resize(got > 0 ? std::size_t(got) : 0);
  if (buf.size() < 2 || static_cast<unsigned char>(buf[0]) != 0x1f || static_cast<unsigned char>(buf[1]) != 0x8b)
    return buf;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return {};
  buf.assign(540, '\0');
  const int n = gzread(f, buf.data(), unsigned(buf.size()));
  gzclose(f);
  buf.resize(n > 0 ? std::size_t(n) : 0);
  return buf;
}

template <class T>
T field(const std::string& h, std::size_t offset, bool swap) {
  T v;
  std::memcpy(&v, h.data() + offset, sizeof(T));
  if (swap) {
    auto* p = reinterpret_cast<unsigned char*>(&v);
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(p[i], p[sizeof(T) - 1 - i]);
  }
  return v;
}

/// Bits per voxel of the NIfTI datatypes; 0 for a code the standard does not define (ITK
/// reports those itself).
int datatype_bits(int datatype) {
  switch (datatype) {
    case 1: return 1;        // binary
    case 2: case 256: return 8;
    case 4: case 512: return 16;
    case 128: return 24;     // RGB
    case 8: case 16: case 768: case 2304: return 32;  // int32, float32, uint32, RGBA
    case 32: case 64: case 1024: case 1280: return 64;  // complex64, float64, int64, uint64
    case 1536: case 1792: return 128;  // float128, complex128
    case 2048: return 256;   // complex256
    default: return 0;
  }
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw_error(ErrorKind::InvalidInput, path, "invalid NIfTI header: " + what);
}

/// Beyond this magnitude (mm, or a quaternion's components) a geometry number is damage, not a
/// grid: ITK's orientation code computes with such numbers in float, and an overflow to infinity
/// there made vnl's SVD loop forever (found by fuzz_nifti_header: srow_z[3] = -1.7e38).
constexpr double kMaxGeometryValue = 1e15;

template <class Real>
void require_finite(const std::string& path, const std::string& h, std::size_t offset, int count,
                    bool swap, const char* name) {
  for (int i = 0; i < count; ++i) {
    const double v = double(field<Real>(h, offset + std::size_t(i) * sizeof(Real), swap));
    const std::string which = std::string(name) + (count > 1 ? "[" + std::to_string(i) + "]" : "");
    if (!std::isfinite(v)) bad(path, which + " is " + (std::isnan(v) ? "NaN" : "infinite"));
    if (std::abs(v) > kMaxGeometryValue) {
      char value[32];
      std::snprintf(value, sizeof value, "%g", v);
      bad(path, which + " is " + value + ", beyond any grid (|value| <= 1e15)");
    }
  }
}

/// Field offsets of the two header versions (the standard's nifti1.h / nifti2.h layouts).
struct Layout {
  std::size_t dim, pixdim, datatype, bitpix, vox_offset, qform_code, sform_code, quatern, srow;
  bool wide;  // NIfTI-2: 8-byte floats, dims and codes of 4 bytes
};
constexpr Layout kNifti1{40, 76, 70, 72, 108, 252, 254, 256, 280, false};
constexpr Layout kNifti2{16, 104, 12, 14, 168, 344, 348, 352, 400, true};

}  // namespace

void check_nifti_header(const std::string& path) {
  std::string header_file = path;
  const std::string ext = extension_of(path);
  if (ext == ".img" || ext == ".img.gz") {  // a file pair: the header is in .hdr
    const std::string stem = path.substr(0, path.size() - ext.size());
    for (const char* e : {".hdr", ".hdr.gz", ".HDR", ".HDR.GZ"})
      if (std::filesystem::is_regular_file(stem + e)) {
        header_file = stem + e;
        break;
      }
  }
  const std::string h = header_bytes(header_file);
  if (h.size() < 348) return;  // too short for a header: ITK says so itself
  const std::int32_t raw = field<std::int32_t>(h, 0, false);
  const std::int32_t swapped = field<std::int32_t>(h, 0, true);
  const bool swap = raw != 348 && raw != 540;
  const std::int32_t sizeof_hdr = swap ? swapped : raw;
  // ITK's reader claimed the file; the NIfTI library reads a header by its magic whatever
  // sizeof_hdr says (and takes the byte order from dim[0]): a damaged first field, or a NIfTI-1
  // magic on a NIfTI-2 size, would pass unnoticed and the fields be read at the wrong offsets.
  const bool nifti1_magic = std::memcmp(h.data() + 344, "n+1", 4) == 0 || std::memcmp(h.data() + 344, "ni1", 4) == 0;
  if ((nifti1_magic && sizeof_hdr != 348) || (sizeof_hdr != 348 && sizeof_hdr != 540))
    bad(path, "sizeof_hdr is " + std::to_string(raw) + ", not 348 (NIfTI-1) or 540 (NIfTI-2)");
  Layout L;
  if (sizeof_hdr == 348) {
    L = kNifti1;
  } else if (h.size() >= 540) {
    L = kNifti2;
  } else {
    bad(path, "sizeof_hdr is 540 (NIfTI-2) but the file holds only " + std::to_string(h.size()) + " bytes");
  }
  // Analyze 7.5 headers (no NIfTI magic) hold other things at these offsets.
  const std::size_t magic_at = L.wide ? 4 : 344;
  const bool single_file = std::memcmp(h.data() + magic_at, "n+", 2) == 0;
  if (!single_file && std::memcmp(h.data() + magic_at, "ni", 2) != 0) return;

  // dim[0] axes, each of at least one voxel: ITK takes a size of 0 or less as 1 and reads the
  // data of another grid.
  auto dim = [&](int i) {
    return L.wide ? field<std::int64_t>(h, L.dim + 8 * std::size_t(i), swap)
                  : std::int64_t(field<std::int16_t>(h, L.dim + 2 * std::size_t(i), swap));
  };
  const std::int64_t axes = dim(0);
  if (axes < 1 || axes > 7) bad(path, "dim[0] is " + std::to_string(axes) + ", not 1..7");
  for (int i = 1; i <= axes; ++i)
    if (dim(i) < 1) bad(path, "dim[" + std::to_string(i) + "] is " + std::to_string(dim(i)) + ": an axis of no voxels");

  const int datatype = field<std::int16_t>(h, L.datatype, swap);
  const int bitpix = field<std::int16_t>(h, L.bitpix, swap);
  const int bits = datatype_bits(datatype);
  if (bits != 0 && bitpix != bits)
    bad(path, "datatype " + std::to_string(datatype) + " has " + std::to_string(bits) +
                  " bits per voxel but bitpix says " + std::to_string(bitpix));

  // The NIfTI library casts vox_offset to an integer file position: it must be a finite,
  // non-negative whole number (and, in a single file, not inside the header).
  const double vox_offset = L.wide ? double(field<std::int64_t>(h, L.vox_offset, swap))
                                   : double(field<float>(h, L.vox_offset, swap));
  if (!std::isfinite(vox_offset)) bad(path, "vox_offset is " + std::string(std::isnan(vox_offset) ? "NaN" : "infinite"));
  if (vox_offset < 0) bad(path, "vox_offset " + std::to_string(vox_offset) + " is negative");
  if (vox_offset != std::floor(vox_offset) || vox_offset > 1e15)
    bad(path, "vox_offset " + std::to_string(vox_offset) + " is not a file position");

  const int qform_code = L.wide ? field<std::int32_t>(h, L.qform_code, swap) : field<std::int16_t>(h, L.qform_code, swap);
  const int sform_code = L.wide ? field<std::int32_t>(h, L.sform_code, swap) : field<std::int16_t>(h, L.sform_code, swap);
  // The voxel sizes of the spatial axes (pixdim[1..3]) make the spacing in every case. The NIfTI
  // library replaces a zero, negative or NaN one by 1 (as ITK reads it, and so does gigareg);
  // huge ones it passes on.
  for (int i = 1; i <= std::min<std::int64_t>(axes, 3); ++i) {
    const double v = L.wide ? field<double>(h, L.pixdim + 8 * std::size_t(i), swap)
                            : double(field<float>(h, L.pixdim + 4 * std::size_t(i), swap));
    if (std::abs(v) > kMaxGeometryValue) {  // false for NaN
      char value[32];
      std::snprintf(value, sizeof value, "%g", v);
      bad(path, "pixdim[" + std::to_string(i) + "] is " + value + ", beyond any grid (|value| <= 1e15)");
    }
  }
  // Only the transforms that are used (code > 0) matter; their numbers reach vnl's matrix code.
  if (qform_code > 0) {
    if (L.wide)
      require_finite<double>(path, h, L.quatern, 6, swap, "quatern_b/c/d, qoffset_x/y/z");
    else
      require_finite<float>(path, h, L.quatern, 6, swap, "quatern_b/c/d, qoffset_x/y/z");
  }
  if (sform_code > 0) {
    if (L.wide)
      require_finite<double>(path, h, L.srow, 12, swap, "srow_x/y/z");
    else
      require_finite<float>(path, h, L.srow, 12, swap, "srow_x/y/z");
  }
}

}  // namespace gigareg::io_detail
