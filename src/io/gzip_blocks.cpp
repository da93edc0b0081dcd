#include "io/gzip_blocks.hpp"

#include <libdeflate.h>
#include <omp.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <future>
#include <memory>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "io/parallel_for.hpp"

namespace gigareg::io_detail {
namespace {

// gzip member header with one extra subfield (RFC 1952, 2.3.1): ID1 ID2 CM FLG MTIME(4) XFL OS,
// XLEN(2), then SI1 SI2 LEN(2) and the 4-byte member size. MTIME 0 and OS 255 (unknown) keep the
// bytes independent of when and where the file was written.
constexpr std::size_t kHeaderBytes = 10 + 2 + 4 + 4;
constexpr std::size_t kTrailerBytes = 8;  // CRC-32, ISIZE
constexpr unsigned char kSubfield[2] = {'G', 'R'};

std::atomic<int> g_default_level{kCompressionAuto};

void put32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint32_t get32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}
std::uint16_t get16(const unsigned char* p) { return std::uint16_t(p[0] | p[1] << 8); }

struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};
struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// One compressor per thread and level, kept for the thread's life (allocating one costs more
// than compressing a small block at high levels; auto switches between levels 0 and 1).
libdeflate_compressor* thread_compressor(int level) {
  thread_local std::unique_ptr<libdeflate_compressor, CompressorDeleter> c[13];
  std::unique_ptr<libdeflate_compressor, CompressorDeleter>& slot = c[level];
  if (!slot) slot.reset(libdeflate_alloc_compressor(level));
  return slot.get();
}

// kCompressionAuto's choice for one member: level 1, or 0 (stored) where deflate would save less
// than kAutoMinSaving of it. The probe deflates four 16 KiB windows spread over the member at
// level 1 (1.6% of a 4 MiB member's work) and depends on the bytes only, so the choice, and the
// file, are the same on every run and thread count.
constexpr double kAutoMinSaving = 0.10;
constexpr std::size_t kAutoProbeBytes = std::size_t(16) << 10;

int auto_member_level(const unsigned char* in, std::size_t n) {
  if (n <= 4 * kAutoProbeBytes) return 1;  // small members: compress (it costs little)
  libdeflate_compressor* c = thread_compressor(1);
  if (c == nullptr) throw_error(ErrorKind::OutOfMemory, "gzip", "cannot allocate a compressor");
  unsigned char out[kAutoProbeBytes + 1024];  // libdeflate's bound for 16 KiB at level 1 is below this
  std::size_t compressed = 0;
  for (int w = 0; w < 4; ++w) {
    const std::size_t at = (n - kAutoProbeBytes) / 3 * std::size_t(w);
    const std::size_t bytes = libdeflate_deflate_compress(c, in + at, kAutoProbeBytes, out, sizeof out);
    compressed += bytes == 0 ? kAutoProbeBytes : bytes;
  }
  return double(compressed) > (1.0 - kAutoMinSaving) * double(4 * kAutoProbeBytes) ? 0 : 1;
}

libdeflate_decompressor* thread_decompressor() {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(
      libdeflate_alloc_decompressor());
  return d.get();
}

// Compresses one block into a complete member.
void compress_member(const unsigned char* in, std::size_t n, int level,
                     std::vector<unsigned char>& member) {
  if (level == kCompressionAuto) level = auto_member_level(in, n);
  libdeflate_compressor* c = thread_compressor(level);
  if (c == nullptr) throw_error(ErrorKind::OutOfMemory, "gzip", "cannot allocate a compressor");
  member.resize(kHeaderBytes + libdeflate_deflate_compress_bound(c, n) + kTrailerBytes);
  unsigned char* h = member.data();
  const unsigned char fixed[12] = {0x1f, 0x8b, 8, 0x04 /*FEXTRA*/, 0, 0, 0, 0, 0, 255, 8, 0};
  std::memcpy(h, fixed, sizeof fixed);
  h[12] = kSubfield[0];
  h[13] = kSubfield[1];
  h[14] = 4;
  h[15] = 0;
  const std::size_t body = libdeflate_deflate_compress(c, in, n, h + kHeaderBytes,
                                                       member.size() - kHeaderBytes - kTrailerBytes);
  if (body == 0) throw_error(ErrorKind::Internal, "gzip", "deflate output exceeded its bound");
  const std::size_t total = kHeaderBytes + body + kTrailerBytes;
  put32(h + 16, std::uint32_t(total));
  put32(h + kHeaderBytes + body, libdeflate_crc32(0, in, n));
  put32(h + kHeaderBytes + body + 4, std::uint32_t(n));
  member.resize(total);
}

}  // namespace

int default_compression_level() { return g_default_level.load(); }

}  // namespace gigareg::io_detail

namespace gigareg {

void set_compression_level(int level) {
  if (level != kCompressionAuto && (level < 0 || level > 12))
    throw_error(ErrorKind::InvalidArgument, "compression level",
                std::to_string(level) + " is outside 0-12 (or kCompressionAuto)");
  io_detail::g_default_level.store(level);
}

int compression_level() { return io_detail::g_default_level.load(); }

}  // namespace gigareg

namespace gigareg::io_detail {

// ---------------------------------------------------------------------------------------------
PlaneMemberLayout plane_member_layout(std::size_t plane_bytes) {
  PlaneMemberLayout l;
  if (plane_bytes <= kGzipBlockBytes) {
    l.planes_per_member = std::int64_t(kGzipBlockBytes / plane_bytes);
    l.piece_bytes = std::size_t(l.planes_per_member) * plane_bytes;
  } else {
    l.planes_per_member = 1;
    l.piece_bytes = kGzipBlockBytes;
  }
  return l;
}

std::uint64_t write_gzip_members(std::size_t count, std::size_t max_member_bytes, int level,
                                 const MemberFill& fill, const MemberPut& put, const std::string& path) {
  if (level != kCompressionAuto && (level < 0 || level > 12))
    throw_error(ErrorKind::InvalidArgument, path, "compression level " + std::to_string(level) + " is outside 0-12");
  const std::size_t batch = std::min(count, std::size_t(std::max(1, omp_get_max_threads())));
  // Not zeroed: untouched pages of a short last member cost no memory.
  std::unique_ptr<unsigned char[]> raw(new unsigned char[std::max<std::size_t>(1, batch) * max_member_bytes]);
  std::vector<std::vector<unsigned char>> members[2] = {std::vector<std::vector<unsigned char>>(batch),
                                                        std::vector<std::vector<unsigned char>>(batch)};
  std::uint64_t written = 0;
  // The puts of the previous batch (declared after the buffers it reads: on an error, its
  // destructor waits for it before they go).
  std::future<void> writing;
  for (std::size_t first = 0, b = 0; first < count; first += batch, ++b) {
    const std::size_t n = std::min(batch, count - first);
    std::vector<std::vector<unsigned char>>& out = members[b % 2];
    parallel_for(n, [&](std::size_t i) {
      unsigned char* in = raw.get() + i * max_member_bytes;
      const std::size_t bytes = fill(first + i, in);
      if (bytes == 0 || bytes > max_member_bytes)
        throw_error(ErrorKind::Internal, path, "a gzip member of " + std::to_string(bytes) + " bytes");
      compress_member(in, bytes, level, out[i]);
    });
    std::vector<std::uint64_t> offsets(n);  // the members' places follow from their sizes
    for (std::size_t i = 0; i < n; ++i) {
      offsets[i] = written;
      written += out[i].size();
    }
    if (writing.valid()) writing.get();  // the other buffers are free again (or its error thrown)
    writing = std::async(std::launch::async, [&put, &out, first, n, offsets = std::move(offsets)] {
      for (std::size_t i = 0; i < n; ++i) put(first + i, out[i].data(), out[i].size(), offsets[i]);
    });
  }
  if (writing.valid()) writing.get();
  return written;
}

// ---------------------------------------------------------------------------------------------
std::vector<GzipMember> find_block_members(const unsigned char* data, std::size_t size) {
  std::vector<GzipMember> members;
  std::uint64_t output_at = 0;
  std::size_t p = 0;
  while (p < size) {
    if (size - p < kHeaderBytes + kTrailerBytes) return {};
    const unsigned char* h = data + p;
    if (h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3] != 0x04) return {};
    if (get16(h + 10) != 8 || h[12] != kSubfield[0] || h[13] != kSubfield[1] || get16(h + 14) != 4)
      return {};
    const std::size_t total = get32(h + 16);
    if (total < kHeaderBytes + kTrailerBytes || total > size - p) return {};
    GzipMember m;
    m.offset = p;
    m.size = total;
    m.output_at = output_at;
    m.output_size = get32(h + total - 4);
    // gigareg writes at most kGzipMaxMemberBytes per member: a larger ISIZE is not its format (and,
    // taken at its word, would size a scratch buffer of up to 4 GiB).
    if (m.output_size > kGzipMaxMemberBytes) return {};
    members.push_back(m);
    output_at += m.output_size;
    p += total;
  }
  return members;
}

namespace {

// Decodes one block member in full into out (m.output_size bytes) and checks its trailer.
void inflate_member(const unsigned char* data, const GzipMember& m, unsigned char* out,
                    const std::string& path) {
  const unsigned char* body = data + m.offset + kHeaderBytes;
  const std::size_t body_size = m.size - kHeaderBytes - kTrailerBytes;
  std::size_t produced = 0;
  const libdeflate_result r = libdeflate_deflate_decompress(thread_decompressor(), body, body_size,
                                                            out, m.output_size, &produced);
  if (r != LIBDEFLATE_SUCCESS || produced != m.output_size)
    throw_error(ErrorKind::Io, path,
                "corrupt compressed data in the gzip member at byte " + std::to_string(m.offset));
  const unsigned char* trailer = data + m.offset + m.size - kTrailerBytes;
  if (libdeflate_crc32(0, out, produced) != get32(trailer))
    throw_error(ErrorKind::Io, path,
                "CRC-32 mismatch in the gzip member at byte " + std::to_string(m.offset) +
                    " (the file is corrupt)");
}

void gunzip_blocks(const unsigned char* data, const std::vector<GzipMember>& members,
                   std::uint64_t begin, std::uint64_t end, unsigned char* out,
                   const std::string& path) {
  const std::uint64_t total = members.back().output_at + members.back().output_size;
  if (end > total)
    throw_error(ErrorKind::Io, path,
                "the decompressed data end at byte " + std::to_string(total) + ", but " +
                    std::to_string(end) + " bytes are needed (truncated file?)");
  std::vector<const GzipMember*> needed;
  for (const GzipMember& m : members)
    if (m.output_at < end && m.output_at + m.output_size > begin) needed.push_back(&m);
  parallel_for(needed.size(), [&](std::size_t i) {
    const GzipMember& m = *needed[i];
    const bool inside = m.output_at >= begin && m.output_at + m.output_size <= end;
    if (inside) {
      inflate_member(data, m, out + (m.output_at - begin), path);
      return;
    }
    std::vector<unsigned char> scratch(m.output_size);
    inflate_member(data, m, scratch.data(), path);
    const std::uint64_t lo = std::max(begin, m.output_at);
    const std::uint64_t hi = std::min(end, m.output_at + m.output_size);
    std::memcpy(out + (lo - begin), scratch.data() + (lo - m.output_at), std::size_t(hi - lo));
  });
}

// Any gzip file, decoded from the start until `end` with zlib (multi-member aware), keeping
// [begin, end). Used for files gigareg did not write when only part of the stream is needed or
// the one-pass decoder cannot size its output.
void gunzip_stream(const unsigned char* data, std::size_t size, std::uint64_t begin,
                   std::uint64_t end, unsigned char* out, const std::string& path) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK)
    throw_error(ErrorKind::OutOfMemory, path, "cannot initialise zlib");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, &inflateEnd);
  std::vector<unsigned char> skip(std::size_t(1) << 20);
  std::uint64_t at = 0;
  std::size_t in_at = 0;
  bool ended = false;  // the last member's trailer has been read and checked
  while (at < end) {
    ended = false;
    const bool skipping = at < begin;
    const std::uint64_t want = skipping ? std::min<std::uint64_t>(begin - at, skip.size()) : end - at;
    const std::size_t chunk = std::size_t(std::min<std::uint64_t>(want, 1u << 30));
    z.next_out = skipping ? skip.data() : out + (at - begin);
    z.avail_out = uInt(chunk);
    const std::size_t in_chunk = std::min<std::size_t>(size - in_at, 1u << 30);
    z.next_in = const_cast<unsigned char*>(data + in_at);
    z.avail_in = uInt(in_chunk);
    const int r = inflate(&z, Z_NO_FLUSH);
    in_at += in_chunk - z.avail_in;
    at += chunk - z.avail_out;
    if (r == Z_STREAM_END) {
      ended = true;
      // Another member may follow (gzip -c a b > c): start it, or stop at the end of the data.
      if (in_at >= size || data[in_at] != 0x1f) break;
      if (inflateReset(&z) != Z_OK) break;
      continue;
    }
    if (r != Z_OK && r != Z_BUF_ERROR)
      throw_error(ErrorKind::Io, path,
                  std::string("corrupt compressed data: ") + (z.msg ? z.msg : "zlib error") +
                      " (decoded " + std::to_string(at) + " bytes)");
    if (r == Z_BUF_ERROR && z.avail_in == 0 && in_at >= size) break;
  }
  if (at < end)
    throw_error(ErrorKind::Io, path,
                "the decompressed data end at byte " + std::to_string(at) + ", but " +
                    std::to_string(end) + " bytes are needed (truncated file?)");
  if (ended) return;
  // When the member ends exactly here its trailer has not been read yet: read it, so that a
  // CRC-32 or length mismatch is reported for whole-file reads too. A file that ends before the
  // trailer (all the data decoded, the checksum cut off) is truncated: nothing verifies it.
  unsigned char probe[1];
  z.next_out = probe;
  z.avail_out = 1;
  z.next_in = const_cast<unsigned char*>(data + in_at);
  z.avail_in = uInt(std::min<std::size_t>(size - in_at, 1u << 30));
  const int r = inflate(&z, Z_NO_FLUSH);
  if (r == Z_DATA_ERROR)
    throw_error(ErrorKind::Io, path,
                std::string("corrupt compressed data: ") + (z.msg ? z.msg : "zlib error"));
  if (r != Z_STREAM_END && z.avail_out == 1 && z.avail_in == 0)
    throw_error(ErrorKind::Io, path,
                "the gzip stream ends before its checksum (CRC-32 and length): truncated file");
}

}  // namespace

void gunzip_range(const unsigned char* compressed, std::size_t size, std::uint64_t begin,
                  std::uint64_t end, unsigned char* out, const std::string& path) {
  if (end <= begin) return;
  const std::vector<GzipMember> members = find_block_members(compressed, size);
  if (!members.empty()) return gunzip_blocks(compressed, members, begin, end, out, path);
  if (begin == 0 && size >= kTrailerBytes) {
    // One member whose ISIZE (the stream length mod 2^32) says it decodes to exactly `end`
    // bytes: libdeflate in one pass, straight into out. It checks the CRC-32 and ISIZE.
    const std::uint32_t isize = get32(compressed + size - 4);
    if (isize == std::uint32_t(end)) {
      std::size_t in_used = 0, produced = 0;
      const libdeflate_result r = libdeflate_gzip_decompress_ex(
          thread_decompressor(), compressed, size, out, std::size_t(end), &in_used, &produced);
      if (r == LIBDEFLATE_SUCCESS && produced == end && in_used == size) return;
      if (r == LIBDEFLATE_BAD_DATA)
        throw_error(ErrorKind::Io, path,
                    "corrupt compressed data or CRC-32 mismatch (the gzip stream fails its check)");
    }
  }
  gunzip_stream(compressed, size, begin, end, out, path);
}

}  // namespace gigareg::io_detail
