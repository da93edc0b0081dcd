// Truncation checks for the formats whose ITK readers do not notice a short file.
//
// ITK 5.2's NiftiImageIO and MetaImageIO return normally when the voxel data ends early (the
// missing part is left as zeros or garbage; MetaIO only prints to stderr), and their writers
// likewise ignore a failed write (disk full, file size limit). These checks compare what the
// header announces with what the file holds; they run before every NIfTI/MetaImage read and
// after every write, on the temporary, before it is renamed into place.
//
// Costs: a plain file is checked by its size. A gzip file is inflated once with zlib to its end,
// which also verifies every member's CRC-32 and length (a corrupt .nii.gz of the right length is
// otherwise read as good data: ITK stops before the checksum).

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {
namespace fs = std::filesystem;
namespace {

using u64 = std::uint64_t;

u64 file_size(const std::string& path) {
  std::error_code ec;
  const auto s = fs::file_size(path, ec);
  if (ec) throw_error(ErrorKind::Io, path, "cannot determine the file size: " + ec.message());
  return u64(s);
}

bool is_gzip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[2] = {0, 0};
  in.read(reinterpret_cast<char*>(magic), 2);
  return in.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/// The first `n` bytes of the file's content (inflated if it is gzip), or fewer if it is shorter.
std::string read_prefix(const std::string& path, std::size_t n) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw_error(ErrorKind::Io, path, "cannot open the file");
  std::string buf(n, '\0');
  const int got = gzread(f, buf.data(), unsigned(n));
  gzclose(f);
  buf.resize(got > 0 ? std::size_t(got) : 0);
  return buf;
}

/// Throws Error(Io) unless the content of `path` (inflated if gzip) holds at least `needed` bytes
/// and, with `verify`, a gzip file's checksums match.
void require_content(const std::string& path, u64 needed, const std::string& what, bool verify) {
  if (!is_gzip(path)) {
    const u64 size = file_size(path);
    if (size < needed)
      throw_error(ErrorKind::Io, path,
                  "the file is truncated: " + what + " needs " + std::to_string(needed) +
                      " bytes but the file holds only " + std::to_string(size));
    return;
  }
  if (!verify) {
    // A file gigareg has just written: only a short write is possible, and a complete
    // single-member gzip file ends with its uncompressed length (mod 2^32), which it lacks.
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    const auto end = in.tellg();
    if (end >= 4) {
      unsigned char tail[4];
      in.seekg(end - std::streamoff(4));
      in.read(reinterpret_cast<char*>(tail), 4);
      const std::uint32_t isize = std::uint32_t(tail[0]) | std::uint32_t(tail[1]) << 8 |
                                  std::uint32_t(tail[2]) << 16 | std::uint32_t(tail[3]) << 24;
      if (in && isize == std::uint32_t(needed)) return;
    }
  }
  // Inflate the whole stream, not just the `needed` bytes: zlib checks each member's CRC-32 and
  // length only at its end, and ITK's reader stops reading before it, so a corrupt file whose
  // length still matches would otherwise be read as good data.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw_error(ErrorKind::Io, path, "cannot open the file");
  gzbuffer(f, 1u << 18);
  std::vector<char> chunk(1u << 20);
  u64 seen = 0;
  int got = 0;
  while ((got = gzread(f, chunk.data(), unsigned(chunk.size()))) > 0) seen += u64(got);
  int zerr = Z_OK;
  const char* zmsg = gzerror(f, &zerr);
  const bool failed = got < 0 || (zerr != Z_OK && zerr != Z_STREAM_END);
  const std::string detail = failed && zmsg ? zmsg : "";
  gzclose(f);
  if (failed)  // zlib's count of what came out before the error is not reliable: no numbers
    throw_error(ErrorKind::Io, path,
                "the file is truncated or its compressed data is corrupt (" + detail +
                    "): the gzip stream does not decompress to its end with a matching checksum "
                    "and length");
  if (seen < needed)
    throw_error(ErrorKind::Io, path,
                "the file is truncated: " + what + " needs " + std::to_string(needed) +
                    " bytes but only " + std::to_string(seen) + " are in the decompressed stream");
}

/// Throws Error(Io) unless the `compressed` bytes at `offset` of `path` are one complete zlib
/// stream (as MetaIO writes CompressedData) that inflates to exactly `expected` bytes with a
/// matching checksum. MetaIO only prints "Uncompress failed" and returns zeros otherwise (a wrong
/// CompressedDataSize, corrupt data).
void require_zlib_stream(const std::string& path, u64 offset, u64 compressed, u64 expected) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(std::streamoff(offset));
  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw_error(ErrorKind::OutOfMemory, path, "zlib cannot start");
  std::vector<unsigned char> input(1u << 18), output(1u << 20);
  u64 left = compressed, produced = 0;
  int ret = Z_OK;
  while (ret == Z_OK) {
    if (z.avail_in == 0 && left > 0) {
      const std::size_t n = std::size_t(std::min<u64>(left, input.size()));
      in.read(reinterpret_cast<char*>(input.data()), std::streamsize(n));
      if (std::size_t(in.gcount()) != n) break;
      left -= n;
      z.next_in = input.data();
      z.avail_in = unsigned(n);
    }
    z.next_out = output.data();
    z.avail_out = unsigned(output.size());
    ret = inflate(&z, Z_NO_FLUSH);
    produced += u64(output.size() - z.avail_out);
    if (ret == Z_BUF_ERROR && z.avail_in == 0 && left > 0) ret = Z_OK;  // more input to come
  }
  const std::string zmsg = z.msg ? z.msg : "";
  const bool consumed_all = left == 0 && z.avail_in == 0;
  inflateEnd(&z);
  if (ret != Z_STREAM_END || !consumed_all || produced != expected)
    throw_error(ErrorKind::Io, path,
                "the compressed voxel data is corrupt or CompressedDataSize is wrong: the header's " +
                    std::to_string(compressed) + " compressed bytes " +
                    (ret != Z_STREAM_END ? "are not a complete zlib stream" + (zmsg.empty() ? "" : " (" + zmsg + ")")
                     : !consumed_all     ? std::string("hold more than the zlib stream")
                                         : "inflate to " + std::to_string(produced) + " bytes") +
                    "; the image needs " + std::to_string(expected));
}

template <class T>
T load(const std::string& b, std::size_t offset, bool swap) {
  T v;
  std::memcpy(&v, b.data() + offset, sizeof(T));
  if (swap) {
    unsigned char* p = reinterpret_cast<unsigned char*>(&v);
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(p[i], p[sizeof(T) - 1 - i]);
  }
  return v;
}

std::int32_t byteswap32(std::int32_t v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u >> 24) | ((u >> 8) & 0xff00u) | ((u << 8) & 0xff0000u) | (u << 24);
  std::int32_t r;
  std::memcpy(&r, &u, 4);
  return r;
}

/// Offset and length of the voxel data a NIfTI-1 or NIfTI-2 header announces; false if the bytes
/// are not such a header (then ITK's own checks are all there is).
bool nifti_layout(const std::string& h, u64& offset, u64& bytes) {
  if (h.size() < 348) return false;
  const std::int32_t raw = load<std::int32_t>(h, 0, false);
  const bool swap = raw != 348 && raw != 540;
  const std::int32_t sizeof_hdr = swap ? byteswap32(raw) : raw;
  u64 count = 1;
  int bitpix = 0;
  if (sizeof_hdr == 348) {
    const int ndim = load<std::int16_t>(h, 40, swap);
    if (ndim < 1 || ndim > 7) return false;
    for (int i = 1; i <= ndim; ++i) {
      const std::int16_t d = load<std::int16_t>(h, std::size_t(40 + 2 * i), swap);
      if (__builtin_mul_overflow(count, u64(d > 0 ? d : 1), &count)) return false;
    }
    bitpix = load<std::int16_t>(h, 72, swap);
    const float vox = load<float>(h, 108, swap);
    if (!(vox >= 0.0f) || vox > 1e12f) return false;
    offset = u64(vox);
  } else if (sizeof_hdr == 540) {
    if (h.size() < 540) return false;
    const std::int64_t ndim = load<std::int64_t>(h, 16, swap);
    if (ndim < 1 || ndim > 7) return false;
    for (int i = 1; i <= ndim; ++i) {
      const std::int64_t d = load<std::int64_t>(h, std::size_t(16 + 8 * i), swap);
      if (__builtin_mul_overflow(count, u64(d > 0 ? d : 1), &count)) return false;
    }
    bitpix = load<std::int16_t>(h, 14, swap);
    const std::int64_t vox = load<std::int64_t>(h, 168, swap);
    if (vox < 0) return false;
    offset = u64(vox);
  } else {
    return false;
  }
  if (bitpix <= 0 || bitpix % 8 != 0) return false;
  return !__builtin_mul_overflow(count, u64(bitpix / 8), &bytes);
}

std::string existing(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (fs::is_regular_file(c)) return c;
  return "";
}

void check_nifti(const std::string& path, bool verify) {
  const std::string ext = extension_of(path);
  const std::string stem = path.substr(0, path.size() - ext.size());
  std::string header_file = path, data_file = path;
  if (ext == ".hdr" || ext == ".hdr.gz" || ext == ".img" || ext == ".img.gz") {  // a file pair
    header_file = existing({stem + ".hdr", stem + ".hdr.gz"});
    data_file = existing({stem + ".img", stem + ".img.gz"});
    if (header_file.empty() || data_file.empty()) return;  // ITK found them; nothing to compare
  }
  u64 offset = 0, bytes = 0;
  if (!nifti_layout(read_prefix(header_file, 540), offset, bytes)) return;
  u64 needed = 0;
  if (__builtin_add_overflow(offset, bytes, &needed)) return;
  require_content(data_file, needed,
                  "the header's " + std::to_string(bytes) + " bytes of voxel data at offset " +
                      std::to_string(offset),
                  verify);
}

/// The fields of a MetaImage header up to ElementDataFile (MetaIO requires it to be the last), and
/// where the data begins in the file (npos if the header has no ElementDataFile or is longer
/// than the 64 KiB looked at).
struct MetaHeader {
  std::map<std::string, std::string> fields;
  std::size_t data_offset = std::string::npos;
  bool has(const char* key) const { return fields.count(key) != 0; }
  std::string get(const char* key) const {
    const auto it = fields.find(key);
    return it == fields.end() ? std::string() : it->second;
  }
};

MetaHeader read_meta_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string header(1u << 16, '\0');
  in.read(header.data(), std::streamsize(header.size()));
  header.resize(std::size_t(in.gcount()));
  MetaHeader m;
  std::size_t pos = 0;
  while (pos < header.size()) {
    const std::size_t eol = header.find('\n', pos);
    if (eol == std::string::npos) return m;  // header longer than we look at: leave it to ITK
    const std::string line = header.substr(pos, eol - pos);
    pos = eol + 1;
    const std::size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    auto trim = [](std::string s) {
      const auto a = s.find_first_not_of(" \t\r");
      const auto b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    const std::string key = trim(line.substr(0, eq));
    m.fields[key] = trim(line.substr(eq + 1));
    if (key == "ElementDataFile") {
      m.data_offset = pos;
      break;
    }
  }
  return m;
}

/// The whitespace-separated numbers of a field; false if any word is not a number.
bool numbers(const std::string& text, std::vector<double>& out) {
  out.clear();
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    const double v = std::strtod(word.c_str(), &end);
    if (end != word.c_str() + word.size()) return false;
    out.push_back(v);
  }
  return true;
}

void check_metaimage(const std::string& path, const itk::ImageIOBase& io, bool verify) {
  const MetaHeader m = read_meta_header(path);
  if (m.data_offset == std::string::npos) return;
  const bool compressed = m.get("CompressedData") == "True" || m.get("CompressedData") == "true";
  long long compressed_size = m.has("CompressedDataSize") ? std::atoll(m.get("CompressedDataSize").c_str()) : -1;
  const long long header_size = std::atoll(m.get("HeaderSize").c_str());
  const std::string data_file = m.get("ElementDataFile");
  const std::size_t data_offset = m.data_offset;
  u64 bytes = 0;
  if (compressed) {
    if (compressed_size <= 0) {
      // MetaIO then takes the rest of the data file as the compressed data.
      if (data_file != "LOCAL") return;
      const u64 size = file_size(path);
      if (size <= u64(data_offset)) return;  // no data at all: the size check below reports it
      compressed_size = (long long)(size - u64(data_offset));
    }
    bytes = u64(compressed_size);
  } else {
    bytes = u64(io.GetImageSizeInBytes());
  }
  const std::string what = "the header's " + std::to_string(bytes) + " bytes of " +
                           (compressed ? "compressed " : "") + "voxel data";
  if (data_file == "LOCAL") {
    require_content(path, u64(data_offset) + bytes, what + " at offset " + std::to_string(data_offset), verify);
    if (compressed) require_zlib_stream(path, u64(data_offset), bytes, u64(io.GetImageSizeInBytes()));
    return;
  }
  if (data_file.find('%') != std::string::npos || data_file.rfind("LIST", 0) == 0) return;
  fs::path data(data_file);
  if (data.is_relative()) data = fs::path(path).parent_path() / data;
  if (!fs::is_regular_file(data))
    throw_error(ErrorKind::Io, path, "its data file '" + data.string() + "' does not exist");
  require_content(data.string(), u64(header_size > 0 ? header_size : 0) + bytes, what, verify);
  if (compressed)
    require_zlib_stream(data.string(), u64(header_size > 0 ? header_size : 0), bytes,
                        u64(io.GetImageSizeInBytes()));
}

}  // namespace

void check_metaimage_header(const std::string& path) {
  const MetaHeader m = read_meta_header(path);
  auto bad = [&](const std::string& what) {
    throw_error(ErrorKind::InvalidInput, path, "invalid MetaImage header: " + what);
  };
  std::vector<double> v;
  auto whole_numbers = [&](const char* key, std::size_t count, double lo, double hi) {
    if (!m.has(key)) return;
    if (!numbers(m.get(key), v) || v.size() != count)
      bad(std::string(key) + " '" + m.get(key) + "' is not " + std::to_string(count) + " number(s)");
    for (double x : v)
      if (!(x >= lo && x <= hi && x == std::floor(x)))
        bad(std::string(key) + " '" + m.get(key) + "' holds a value that is not a whole number in " +
            std::to_string((long long)lo) + ".." + std::to_string((long long)hi));
  };
  auto finite_numbers = [&](const char* key, std::size_t count) {
    if (!m.has(key)) return;
    if (!numbers(m.get(key), v) || v.size() != count)
      bad(std::string(key) + " '" + m.get(key) + "' is not " + std::to_string(count) + " number(s)");
    for (double x : v)
      if (!std::isfinite(x)) bad(std::string(key) + " '" + m.get(key) + "' is not finite");
  };
  // MetaIO loops and allocates by NDims and DimSize before any check of its own (NDims = -1 or
  // 1e9 hangs it); a size of 6.5 is read as 6.
  whole_numbers("NDims", 1, 1, 4);
  if (!m.has("NDims")) return;  // not a MetaImage header MetaIO can use: it says so itself
  const std::size_t n = std::size_t(std::atoi(m.get("NDims").c_str()));
  if (!m.has("DimSize")) bad("no DimSize");
  whole_numbers("DimSize", n, 1, 2147483647.0);
  for (const char* key : {"ElementSpacing", "ElementSize", "Offset", "Position", "Origin", "CenterOfRotation"})
    finite_numbers(key, n);
  for (const char* key : {"TransformMatrix", "Rotation", "Orientation"}) finite_numbers(key, n * n);
  whole_numbers("ElementNumberOfChannels", 1, 1, 1024);
  whole_numbers("HeaderSize", 1, -1, 1e15);
  whole_numbers("CompressedDataSize", 1, 1, 1e15);  // 0: MetaIO then inflates nothing
  const std::string data_file = m.get("ElementDataFile");
  if (m.data_offset != std::string::npos) {
    if (data_file.empty()) bad("ElementDataFile is empty");
    // One data file, or the data after the header: lists and numbered slices are not read
    // (their completeness cannot be checked).
    if (data_file.rfind("LIST", 0) == 0 || data_file.find('%') != std::string::npos)
      bad("ElementDataFile '" + data_file + "': gigareg reads LOCAL data or one data file");
    if (data_file == "LOCAL" && std::atoll(m.get("HeaderSize").c_str()) > 0)
      bad("HeaderSize " + m.get("HeaderSize") + " with LOCAL data");
  }
}

void check_png(const std::string& path) {
  // ITK's PNGImageIO sets no error handler of its own for some of libpng's errors: a damaged
  // chunk ends the process in abort(). libpng's simplified API reports every error as a return
  // value, so the whole file is decoded once with it first.
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str()))
    throw_error(ErrorKind::InvalidInput, path, std::string("invalid PNG: ") + image.message);
  const std::uint64_t bytes = std::uint64_t(PNG_IMAGE_SIZE(image));
  if (bytes > (std::uint64_t(1) << 31)) {
    png_image_free(&image);
    throw_error(ErrorKind::InvalidInput, path, "the PNG announces " + std::to_string(image.width) + " x " +
                                                   std::to_string(image.height) + " pixels: too large for a 2-D image");
  }
  std::vector<unsigned char> pixels(static_cast<std::size_t>(bytes));
  const bool ok = png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr) != 0;
  const std::string message = image.message;
  png_image_free(&image);
  if (!ok) throw_error(ErrorKind::InvalidInput, path, "invalid PNG: " + message);
}

void check_data_complete(const std::string& path, const itk::ImageIOBase& io, bool verify) {
  const std::string cls = io.GetNameOfClass();
  if (cls == "NiftiImageIO") check_nifti(path, verify);
  else if (cls == "MetaImageIO") check_metaimage(path, io, verify);
  // NRRD (teem) and PNG (libpng) readers fail on short data themselves.
}

}  // namespace gigareg::io_detail
