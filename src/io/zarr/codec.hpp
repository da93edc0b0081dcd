#pragma once
// Chunk codecs of gigareg's Zarr arrays (not installed): the "compressor" of a Zarr v2 .zarray.
//
// Written: Blosc (c-blosc 1, Debian's libblosc) with the zstd or lz4 codec and byte shuffle, or
// no compressor ("null"). Read as well: any Blosc codec the library was built with, and zlib and
// gzip chunks (numcodecs' "zlib" and "gzip", decoded with libdeflate). docs/zarr.md lists them.
//
// Blosc is called through its context functions with one internal thread: chunks are compressed
// in parallel by the caller's threads, and the bytes of a chunk depend only on its values and the
// codec's parameters (blocksize chosen by Blosc from those alone), never on the thread count.

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace gigareg::zarr {

struct Codec {
  enum class Kind { None, Blosc, Zlib, Gzip, Zstd };  // Zstd: Zarr v3's "zstd" codec (read only)
  Kind kind = Kind::Blosc;
  std::string cname = "zstd";  // Blosc: "zstd", "lz4", "lz4hc", "blosclz", "zlib"
  int clevel = 1;              // Blosc 0-9; zlib / gzip 0-9 (only read)
  int shuffle = 1;             // Blosc: 0 none, 1 byte, 2 bit
  int blocksize = 0;           // Blosc: 0 = automatic (numcodecs' default)

  /// The .zarray "compressor" value (null for Kind::None), keys in a fixed order.
  nlohmann::ordered_json to_json() const;
  /// Parses a .zarray "compressor" value; an unknown id, a Blosc codec the library lacks or a
  /// malformed field is an Error(InvalidInput) naming `where`.
  static Codec from_json(const nlohmann::json& j, const std::string& where);
  /// Parses a Zarr v3 array's "codecs" list: "bytes" (endianness; returned in `big_endian`), then
  /// at most one of "blosc", "gzip", "zstd". Sharding, transpose, checksums and anything else
  /// are an Error(InvalidInput) naming `where`.
  static Codec from_v3_json(const nlohmann::json& codecs, bool& big_endian, const std::string& where);
  /// "blosc/zstd:1 shuffle", "null", ... for messages and `gigareg info`.
  std::string describe() const;
};

/// Compresses `size` bytes of values of `typesize` bytes into `out` (resized to the result).
void encode_chunk(const Codec& codec, const void* data, std::size_t size, std::size_t typesize,
                  std::vector<unsigned char>& out, const std::string& where);

/// Decodes a stored chunk into exactly `size` bytes at `out`. Corrupt data, a wrong decoded size
/// (a truncated chunk, a chunk of another shape or dtype) is an Error(InvalidInput) naming `where`.
void decode_chunk(const Codec& codec, const unsigned char* data, std::size_t stored, void* out,
                  std::size_t size, const std::string& where);

}  // namespace gigareg::zarr
