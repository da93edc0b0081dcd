#pragma once
// Block-parallel gzip through libdeflate (not installed).
//
// Writing: the stream is cut into members on a grid of whole planes that does not depend on who
// writes them (plane_member_layout: one process, or P processes each writing the members that
// start in its z-slab), and each member is a complete gzip member (RFC 1952 allows any number of
// members in one file; gzip, zlib's gzread, ITK's NIfTI reader and Python's gzip module decode the
// members as one stream). Members are compressed on all cores and handed out in order, so the
// bytes of a file depend neither on the thread count nor on the process count. Each member's
// header carries an extra field (FEXTRA, subfield 'G' 'R', 4 bytes: the member's total size,
// little endian) so that a reader finds every member without inflating the ones before it: the
// layout is documented in docs/io.md.
//
// Reading: gigareg's own files are decoded member by member on all cores (only the members a
// byte range needs, for a slab); any other gzip file (one member, or members without the field)
// is decoded with libdeflate in one pass. CRC-32 and ISIZE of every member are checked.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gigareg::io_detail {

/// Uncompressed bytes per gzip member: 4 MiB keeps 16 threads busy on a 256^3 field (192 MiB)
/// and costs < 0.1% of compression against one stream (deflate's window is 32 KiB).
inline constexpr std::size_t kGzipBlockBytes = std::size_t(4) << 20;
/// The most a member of gigareg's holds: a block and, in front of a file's first member, the
/// file's own header (NIfTI's 352 bytes; the room for it is kept generous).
inline constexpr std::size_t kGzipMaxMemberBytes = kGzipBlockBytes + 4096;

/// The level used by writers when none is given (libdeflate's scale, 0-12). Process-wide;
/// set_compression_level in gigareg/io.hpp changes it.
int default_compression_level();

/// Where gigareg cuts a stream of planes (the voxel data of a NIfTI file: for each component,
/// nz planes of `plane_bytes`) into gzip members. Members never cross a component; planes of at
/// most kGzipBlockBytes are grouped `planes_per_member` at a time on a grid of plane indices
/// aligned to plane 0 (the last member of a component is shorter); larger planes are cut into
/// `piece_bytes` pieces, one member each (the plane's last piece is shorter). The grid depends on
/// the plane size alone, never on the slab a process owns, so that P processes writing their own
/// members produce the single process's file byte for byte (docs/io.md). The file's header goes
/// in front of the first member's data.
struct PlaneMemberLayout {
  std::int64_t planes_per_member = 1;
  std::size_t piece_bytes = 0;  // the bytes of a member's data (whole planes, or a piece of one)
};
PlaneMemberLayout plane_member_layout(std::size_t plane_bytes);

/// Writes `count` gzip members in file order, a batch of members (one per thread) at a time:
/// `fill(j, raw)` puts member j's uncompressed data into `raw` (room for `max_member_bytes`) and
/// returns their size, and the member is compressed, both on all cores; then `put(j, member,
/// bytes, offset)` receives the batch's members in order, with their offsets from the first
/// member's first byte, on a thread of its own while the next batch is filled and compressed
/// (the writes of one file queue on the file anyway; this hides them behind the compression).
/// Puts are never concurrent with each other. Returns the compressed size of all members.
/// Memory: one batch of raw members and two of compressed ones. The bytes depend on the fills and
/// the level only, never on the thread count. Errors throw (the lowest j's) naming `path`.
using MemberFill = std::function<std::size_t(std::size_t j, unsigned char* raw)>;
using MemberPut =
    std::function<void(std::size_t j, const unsigned char* member, std::size_t bytes, std::uint64_t offset)>;
std::uint64_t write_gzip_members(std::size_t count, std::size_t max_member_bytes, int level,
                                 const MemberFill& fill, const MemberPut& put, const std::string& path);

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
