// The process-wide options of the .zarr stores gigareg writes (gigareg/io.hpp: ZarrOptions).

#include <mutex>
#include <string>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

namespace gigareg {
namespace {

std::mutex g_mutex;
ZarrOptions g_options;

}  // namespace

void set_zarr_options(const ZarrOptions& o) {
  for (int a = 0; a < 3; ++a)
    if (o.chunk[a] < 1 || o.chunk[a] > 4096)
      throw_error(ErrorKind::InvalidArgument, "--zarr-chunk",
                  "chunk sizes must be 1-4096 voxels, got " + std::to_string(o.chunk[a]));
  // Chunks are held decoded once per thread; float64 is the widest type written.
  if (o.chunk.x * o.chunk.y * o.chunk.z * 8 > (index_t(1) << 30))
    throw_error(ErrorKind::InvalidArgument, "--zarr-chunk", "a chunk may hold at most 2^27 voxels");
  if (o.codec != "zstd" && o.codec != "lz4" && o.codec != "none")
    throw_error(ErrorKind::InvalidArgument, "--zarr-codec",
                "expected zstd, lz4 or none, got '" + o.codec + "'");
  if (o.level < 0 || o.level > 9)
    throw_error(ErrorKind::InvalidArgument, "--zarr-codec",
                "the Blosc level must be 0-9, got " + std::to_string(o.level));
  std::lock_guard<std::mutex> lock(g_mutex);
  g_options = o;
}

ZarrOptions zarr_options() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_options;
}

Index3 parse_zarr_chunk(const std::string& text) {
  auto fail = [&]() -> Index3 {
    throw_error(ErrorKind::InvalidArgument, "--zarr-chunk",
                "expected N (a cube) or XxYxZ voxels, e.g. 64 or 128x128x32, got '" + text + "'");
  };
  Index3 c{0, 0, 0};
  int axis = 0;
  std::size_t at = 0;
  while (true) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(text.substr(at), &used);
    } catch (const std::exception&) {
      return fail();
    }
    if (used == 0 || axis > 2 || text[at] == '-' || text[at] == '+') return fail();
    c[axis++] = index_t(v);
    at += used;
    if (at == text.size()) break;
    if (text[at] != 'x') return fail();
    ++at;
  }
  if (axis == 1) c.y = c.z = c.x;
  else if (axis != 3) return fail();
  if (c.x < 1 || c.y < 1 || c.z < 1) return fail();
  return c;
}

}  // namespace gigareg
