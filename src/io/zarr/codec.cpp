#include "io/zarr/codec.hpp"

#include <blosc.h>
#include <libdeflate.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "gigareg/error.hpp"

namespace gigareg::zarr {
namespace {

using Json = nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw_error(ErrorKind::InvalidInput, where, what);
}

int int_field(const Json& j, const char* key, int fallback, int lo, int hi, const std::string& where) {
  if (!j.contains(key)) return fallback;
  const Json& v = j.at(key);
  if (!v.is_number_integer() || v.get<long long>() < lo || v.get<long long>() > hi)
    bad(where, std::string("compressor field '") + key + "' must be an integer in " +
                   std::to_string(lo) + ".." + std::to_string(hi) + ", got " + v.dump());
  return int(v.get<long long>());
}

bool blosc_has(const std::string& cname) {
  // c-blosc lists what it was built with: "blosclz,lz4,lz4hc,snappy,zlib,zstd".
  const std::string list = blosc_list_compressors();
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    if (list.compare(at, comma - at, cname) == 0) return true;
    at = comma + 1;
  }
  return false;
}

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};
libdeflate_decompressor* thread_decompressor() {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> d(
      libdeflate_alloc_decompressor());
  return d.get();
}

}  // namespace

nlohmann::ordered_json Codec::to_json() const {
  nlohmann::ordered_json j;  // null
  switch (kind) {
    case Kind::None: break;
    case Kind::Blosc:
      j["id"] = "blosc";
      j["cname"] = cname;
      j["clevel"] = clevel;
      j["shuffle"] = shuffle;
      j["blocksize"] = blocksize;
      break;
    case Kind::Zlib:
    case Kind::Gzip:
      j["id"] = kind == Kind::Zlib ? "zlib" : "gzip";
      j["level"] = clevel;
      break;
    case Kind::Zstd:  // Zarr v3 only: numcodecs' v2 "zstd" id
      j["id"] = "zstd";
      j["level"] = clevel;
      break;
  }
  return j;
}

Codec Codec::from_json(const nlohmann::json& j, const std::string& where) {
  Codec c;
  if (j.is_null()) {
    c.kind = Kind::None;
    return c;
  }
  if (!j.is_object() || !j.contains("id") || !j.at("id").is_string())
    bad(where, "'compressor' must be null or an object with a string 'id', got " + j.dump());
  const std::string id = j.at("id").get<std::string>();
  if (id == "blosc") {
    c.kind = Kind::Blosc;
    if (!j.contains("cname") || !j.at("cname").is_string())
      bad(where, "the blosc compressor has no string 'cname'");
    c.cname = j.at("cname").get<std::string>();
    if (!blosc_has(c.cname))
      bad(where, "blosc codec '" + c.cname + "' is not available (this c-blosc has " +
                     std::string(blosc_list_compressors()) + ")");
    c.clevel = int_field(j, "clevel", 5, 0, 9, where);
    c.shuffle = int_field(j, "shuffle", 1, -1, 2, where);  // numcodecs: -1 = automatic
    if (c.shuffle == -1) c.shuffle = 1;  // what numcodecs' AUTOSHUFFLE picks for typesize > 1
    c.blocksize = int_field(j, "blocksize", 0, 0, 1 << 30, where);
    return c;
  }
  if (id == "zlib" || id == "gzip") {
    c.kind = id == "zlib" ? Kind::Zlib : Kind::Gzip;
    c.clevel = int_field(j, "level", 1, -1, 9, where);
    return c;
  }
  throw_error(ErrorKind::InvalidInput, where,
              "unknown compressor '" + id + "' (gigareg reads blosc, zlib, gzip and null)");
}

Codec Codec::from_v3_json(const nlohmann::json& codecs, bool& big_endian, const std::string& where) {
  if (!codecs.is_array() || codecs.empty()) bad(where, "'codecs' must be a non-empty list");
  Codec c;
  c.kind = Kind::None;
  big_endian = false;
  bool bytes_seen = false;
  for (const Json& k : codecs) {
    if (!k.is_object() || !k.contains("name") || !k.at("name").is_string())
      bad(where, "a codec has no 'name': " + k.dump());
    const std::string name = k.at("name").get<std::string>();
    const Json conf = k.contains("configuration") ? k.at("configuration") : Json::object();
    if (name == "sharding_indexed")
      bad(where, "codec 'sharding_indexed': sharded arrays are not read yet (convert the store "
                 "without sharding)");
    if (name == "bytes") {
      if (bytes_seen) bad(where, "two 'bytes' codecs");
      bytes_seen = true;
      if (conf.contains("endian")) {
        if (conf.at("endian") != "little" && conf.at("endian") != "big")
          bad(where, "bytes codec endian " + conf.at("endian").dump());
        big_endian = conf.at("endian") == "big";
      }
      continue;
    }
    if (!bytes_seen)
      bad(where, "codec '" + name + "' before 'bytes' is not supported (gigareg reads bytes, then "
                 "one of blosc, gzip, zstd; no sharding, no transpose)");
    if (c.kind != Kind::None) bad(where, "more than one compressor in 'codecs'");
    if (name == "blosc") {
      c.kind = Kind::Blosc;
      if (!conf.contains("cname") || !conf.at("cname").is_string()) bad(where, "the blosc codec has no 'cname'");
      c.cname = conf.at("cname").get<std::string>();
      if (!blosc_has(c.cname))
        bad(where, "blosc codec '" + c.cname + "' is not available (this c-blosc has " +
                       std::string(blosc_list_compressors()) + ")");
      c.clevel = int_field(conf, "clevel", 5, 0, 9, where);
      c.shuffle = 0;  // decoding reads the shuffle from each chunk's own header
    } else if (name == "gzip") {
      c.kind = Kind::Gzip;
      c.clevel = int_field(conf, "level", 1, 0, 9, where);
    } else if (name == "zstd") {
      c.kind = Kind::Zstd;
      c.clevel = int_field(conf, "level", 0, -131072, 22, where);
    } else {
      bad(where, "codec '" + name + "' is not supported (gigareg reads bytes, blosc, gzip and zstd)");
    }
  }
  if (!bytes_seen) bad(where, "'codecs' has no 'bytes' codec");
  return c;
}

std::string Codec::describe() const {
  switch (kind) {
    case Kind::None: return "null (uncompressed)";
    case Kind::Blosc:
      return "blosc/" + cname + ":" + std::to_string(clevel) +
             (shuffle == 2 ? " bitshuffle" : shuffle == 1 ? " shuffle" : "");
    case Kind::Zlib: return "zlib:" + std::to_string(clevel);
    case Kind::Gzip: return "gzip:" + std::to_string(clevel);
    case Kind::Zstd: return "zstd:" + std::to_string(clevel);
  }
  return "?";
}

void encode_chunk(const Codec& codec, const void* data, std::size_t size, std::size_t typesize,
                  std::vector<unsigned char>& out, const std::string& where) {
  switch (codec.kind) {
    case Codec::Kind::None:
      out.resize(size);
      std::memcpy(out.data(), data, size);
      return;
    case Codec::Kind::Blosc: {
      out.resize(size + BLOSC_MAX_OVERHEAD);
      const int n = blosc_compress_ctx(codec.clevel, codec.shuffle, typesize, size, data, out.data(),
                                       out.size(), codec.cname.c_str(), std::size_t(codec.blocksize),
                                       /*numinternalthreads=*/1);
      if (n <= 0)
        throw_error(ErrorKind::Internal, where,
                    "blosc failed to compress a chunk (code " + std::to_string(n) + ")");
      out.resize(std::size_t(n));
      return;
    }
    case Codec::Kind::Zlib:
    case Codec::Kind::Gzip:
    case Codec::Kind::Zstd: break;
  }
  throw_error(ErrorKind::InvalidArgument, where, "gigareg writes blosc or uncompressed chunks only");
}

void decode_chunk(const Codec& codec, const unsigned char* data, std::size_t stored, void* out,
                  std::size_t size, const std::string& where) {
  switch (codec.kind) {
    case Codec::Kind::None:
      if (stored != size)
        bad(where, "the uncompressed chunk holds " + std::to_string(stored) + " bytes, " +
                       std::to_string(size) + " expected (truncated, or another shape or dtype)");
      std::memcpy(out, data, size);
      return;
    case Codec::Kind::Blosc: {
      std::size_t nbytes = 0;
      if (blosc_cbuffer_validate(data, stored, &nbytes) != 0)
        bad(where, "not a valid blosc chunk (" + std::to_string(stored) +
                       " bytes: truncated or corrupt)");
      if (nbytes != size)
        bad(where, "the blosc chunk decodes to " + std::to_string(nbytes) + " bytes, " +
                       std::to_string(size) + " expected (another chunk shape or dtype)");
      const int n = blosc_decompress_ctx(data, out, size, 1);
      if (n < 0 || std::size_t(n) != size)
        bad(where, "the blosc chunk is corrupt (decompression failed)");
      return;
    }
    case Codec::Kind::Zlib:
    case Codec::Kind::Gzip: {
      libdeflate_decompressor* d = thread_decompressor();
      if (d == nullptr) throw_error(ErrorKind::OutOfMemory, where, "cannot allocate a decompressor");
      std::size_t got = 0;
      const libdeflate_result r =
          codec.kind == Codec::Kind::Zlib
              ? libdeflate_zlib_decompress(d, data, stored, out, size, &got)
              : libdeflate_gzip_decompress(d, data, stored, out, size, &got);
      if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
        bad(where, "the chunk decodes to more than the " + std::to_string(size) + " bytes expected");
      if (r != LIBDEFLATE_SUCCESS) bad(where, "the compressed chunk is corrupt or truncated");
      if (got != size)
        bad(where, "the chunk decodes to " + std::to_string(got) + " bytes, " +
                       std::to_string(size) + " expected");
      return;
    }
    case Codec::Kind::Zstd: {
      const unsigned long long n = ZSTD_getFrameContentSize(data, stored);
      if (n == ZSTD_CONTENTSIZE_ERROR) bad(where, "not a zstd frame (truncated or corrupt chunk)");
      if (n != ZSTD_CONTENTSIZE_UNKNOWN && n != size)
        bad(where, "the zstd chunk decodes to " + std::to_string(n) + " bytes, " +
                       std::to_string(size) + " expected (another chunk shape or dtype)");
      const std::size_t got = ZSTD_decompress(out, size, data, stored);
      if (ZSTD_isError(got)) bad(where, std::string("the zstd chunk is corrupt: ") + ZSTD_getErrorName(got));
      if (got != size)
        bad(where, "the chunk decodes to " + std::to_string(got) + " bytes, " + std::to_string(size) +
                       " expected");
      return;
    }
  }
}

}  // namespace gigareg::zarr
