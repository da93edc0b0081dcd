#pragma once
// Block-parallel gzip through libdeflate (not installed).
//
// Writing: the stream is cut into blocks of kGzipBlockBytes and each block becomes a complete
// gzip member (RFC 1952 allows any number of members in one file; gzip, zlib's gzread, ITK's
// NIfTI reader and Python's gzip module decode the members as one stream). Members are
// compressed on all cores and written in order, so the bytes of a file do not depend on the
// thread count. Each member's header carries an extra field (FEXTRA, subfield 'G' 'R', 4 bytes:
// the member's total size, little endian) so that a reader finds every member without inflating
// the ones before it: the layout is documented in docs/io.md.
//
// Reading: gigareg's own files are decoded member by member on all cores (only the members a
// byte range needs, for a slab); any other gzip file (one member, or members without the field)
// is decoded with libdeflate in one pass. CRC-32 and ISIZE of every member are checked.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace gigareg::io_detail {

/// Uncompressed bytes per gzip member: 4 MiB keeps 16 threads busy on a 256^3 field (192 MiB)
/// and costs < 0.1% of compression against one stream (deflate's window is 32 KiB).
inline constexpr std::size_t kGzipBlockBytes = std::size_t(4) << 20;

/// The level used by writers when none is given (libdeflate's scale, 0-12). Process-wide;
/// set_compression_level in gigareg/io.hpp changes it.
int default_compression_level();

/// Writes a gzip stream of block members to an open file. Data arrive in order through
/// append(); when a batch of blocks (one per thread) is full it is compressed in parallel and
/// written. Memory: two batches of kGzipBlockBytes per thread. Errors (a failed write, disk full)
/// throw Error(Io) naming `path`.
class GzipBlockWriter {
 public:
  GzipBlockWriter(std::FILE* file, std::string path, int level);
  GzipBlockWriter(const GzipBlockWriter&) = delete;
  GzipBlockWriter& operator=(const GzipBlockWriter&) = delete;

  void append(const void* data, std::size_t bytes);
  /// Room for `bytes` (at most kGzipBlockBytes) to be filled by the caller and committed with
  /// commit(bytes): avoids a copy when the producer converts straight into the batch.
  unsigned char* reserve(std::size_t bytes);
  void commit(std::size_t bytes);
  /// Compresses and writes what is buffered. The stream is complete after finish().
  void finish();

 private:
  void flush_batch();

  std::FILE* file_;
  std::string path_;
  int level_;
  std::size_t threads_;
  std::vector<unsigned char> batch_;   // threads_ blocks of input, filled in order
  std::size_t filled_ = 0;
  std::vector<std::vector<unsigned char>> members_;  // compressed output, one per block
};

/// Where the members of a gzip file start and how much each decodes to, found from the 'GR'
/// extra fields alone. Empty when the file is not entirely made of such members (then it must be
/// decoded as a single stream).
struct GzipMember {
  std::size_t offset = 0;        // in the compressed file
  std::size_t size = 0;          // compressed size (header to trailer)
  std::uint64_t output_at = 0;   // where its data start in the decoded stream
  std::size_t output_size = 0;   // ISIZE
};
std::vector<GzipMember> find_block_members(const unsigned char* data, std::size_t size);

/// Decodes the bytes [begin, end) of the decompressed stream of the gzip file `compressed` (the
/// whole file, in memory) into out (end - begin bytes). Block files decode only the members
/// that overlap the range, in parallel; other files decode from the start in one pass. Throws
/// Error(Io) naming `path` on corrupt data, a CRC or length mismatch, or a stream shorter than
/// `end`.
void gunzip_range(const unsigned char* compressed, std::size_t size, std::uint64_t begin,
                  std::uint64_t end, unsigned char* out, const std::string& path);

}  // namespace gigareg::io_detail
