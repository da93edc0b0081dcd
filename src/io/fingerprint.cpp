// A cheap fingerprint of a file's bytes, for comparing the files that several processes open
// under one name (src/registration/input_agreement.cpp).

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "gigareg/error.hpp"
#include "io/io_internal.hpp"

namespace gigareg::io_detail {

std::uint64_t file_fingerprint(const std::string& path) {
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
