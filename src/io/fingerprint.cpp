// A cheap fingerprint of a file's bytes, for comparing the files that several processes open
// under one name (src/registration/input_agreement.cpp).

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <utility>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {

namespace {

// A .zarr store: the names and sizes of all its files (sorted) and the whole metadata files; the
// chunks' own bytes are not read (a store of a gigavoxel image holds tens of thousands of them;
// two stores that differ in data but not in any chunk's compressed size are not told apart).
std::uint64_t store_fingerprint(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::pair<std::string, std::uint64_t>> files;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec))
      files.emplace_back(fs::relative(it->path(), path, ec).string(), std::uint64_t(it->file_size(ec)));
  if (ec) throw_error(ErrorKind::Io, path, "cannot list the store: " + ec.message());
  std::sort(files.begin(), files.end());
  std::uint32_t crc = crc32(0L, Z_NULL, 0), adler = adler32(0L, Z_NULL, 0);
  auto mix = [&](const void* data, std::size_t n) {
    crc = crc32(crc, static_cast<const Bytef*>(data), uInt(n));
    adler = adler32(adler, static_cast<const Bytef*>(data), uInt(n));
  };
  for (const auto& [name, size] : files) {
    mix(name.data(), name.size() + 1);
    mix(&size, sizeof size);
    const std::string leaf = fs::path(name).filename().string();
    if (leaf == ".zattrs" || leaf == ".zgroup" || leaf == ".zarray") {
      std::ifstream in(fs::path(path) / name, std::ios::binary);
      std::vector<char> text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      mix(text.data(), text.size());
    }
  }
  return (std::uint64_t(crc) << 32) | adler;
}

}  // namespace

std::uint64_t file_fingerprint(const std::string& path) {
  if (is_zarr_path(path) && std::filesystem::is_directory(path)) return store_fingerprint(path);
  std::error_code ec;
  const std::uint64_t size = std::uint64_t(std::filesystem::file_size(path, ec));
  if (ec) throw_error(ErrorKind::Io, path, "cannot determine the file size: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error(ErrorKind::Io, path, "cannot open the file");
  // The size, the first and last 64 KiB (headers, a gzip trailer's CRC-32 of the whole content)
  // and 64 blocks of 4 KiB spread evenly over the rest: a few hundred kB read whatever the file's
  // size, and files that differ anywhere but in a few unsampled bytes of raw data differ here.
  std::uint32_t crc = crc32(0L, Z_NULL, 0), adler = adler32(0L, Z_NULL, 0);
  auto mix = [&](const void* data, std::size_t n) {
    crc = crc32(crc, static_cast<const Bytef*>(data), uInt(n));
    adler = adler32(adler, static_cast<const Bytef*>(data), uInt(n));
  };
  mix(&size, sizeof size);
  std::vector<char> buf(1u << 16);
  auto sample = [&](std::uint64_t at, std::size_t n) {
    if (at >= size) return;
    if (n > size - at) n = std::size_t(size - at);
    in.clear();
    in.seekg(std::streamoff(at));
    in.read(buf.data(), std::streamsize(n));
    if (std::size_t(in.gcount()) != n) throw_error(ErrorKind::Io, path, "reading the file failed");
    mix(buf.data(), n);
  };
  sample(0, buf.size());
  for (int k = 1; k <= 64; ++k) sample(size / 65 * std::uint64_t(k), 4096);
  sample(size > buf.size() ? size - buf.size() : 0, buf.size());
  return (std::uint64_t(crc) << 32) | adler;
}

}  // namespace gigareg::io_detail
