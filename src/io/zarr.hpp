#pragma once
// OME-Zarr stores: gigareg's own small implementation of Zarr v2 directory stores holding an
// NGFF 0.4 multiscale image (not installed; docs/zarr.md describes the files). Zarr v3 stores
// holding NGFF 0.5 are read as well (without sharding); gigareg writes v2 / 0.4.
//
// A store is a directory `name.zarr/` holding a group (.zgroup, .zattrs with the NGFF
// "multiscales" and gigareg's geometry key) and one Zarr array per pyramid level (`0/`, `1/`, ...;
// level 0 is the full resolution). Arrays are C-ordered with axes (z, y, x) for a scalar image
// and (c, z, y, x) with c = 3 for a displacement field (the x, y, z components of physical LPS
// displacements in mm, chunked one component per chunk), so a chunk of a field is a block of one
// component plane, as the field is laid out in memory. Chunks are files `level/[c/]z/y/x`
// (dimension separator "/"), compressed with Blosc (src/io/zarr/codec.hpp).
//
// Everything in gigareg reads and writes .zarr through the image functions of gigareg/io.hpp,
// which dispatch here on the extension (io_detail::is_zarr_path). This header is the lower level
// used by them and by code that writes one store from several places (the ranks of a distributed
// run):
//
//   // once (one rank): the store's metadata, in a new directory (or the empty one that
//   // io_detail::StagedFile made for the final name)
//   zarr::create_store(dir, zarr::StoreSpec::for_grid(grid, components, pixel_type), final_name);
//   // every writer: its own whole chunks of planes (chunk-aligned z-ranges, disjoint)
//   zarr::Store store = zarr::Store::open(dir, final_name);
//   store.write_planes(0, z0, nz, slab_values);
//   // readers: any z-range; only the chunks it touches are read
//   store.read_planes(0, z0, nz, out);
//
// Staging (writing a temporary directory and renaming it over the final name once complete) is
// the caller's business: io_detail::StagedFile makes a temporary directory for a .zarr name. Under
// MPI, one rank creates it and the store's metadata, every rank writes its chunks into it, and
// that rank commits it once all have succeeded.
//
// Threads: read_planes and write_planes decode / encode the chunks of their range on all cores
// (OpenMP). Several processes or threads may call write_planes on the same store at once as long
// as their chunk ranges are disjoint; each chunk file is created exclusively (a second write of
// the same chunk is an error, never a silent overwrite). The bytes of every file depend only on
// the values and the spec, never on the thread count or on who wrote which chunk.

#include <cstddef>
#include <string>
#include <vector>

#include "gigareg/io.hpp"
#include "io/zarr/codec.hpp"

namespace gigareg::zarr {

/// The key of gigareg's attributes in the group's .zattrs (origin and direction, which NGFF 0.4
/// cannot express; docs/zarr.md).
inline constexpr const char* kAttributesKey = "gigareg";

/// One Zarr array of a store (one pyramid level): what its .zarray says, checked.
struct ArrayInfo {
  std::string path;        // the array's directory
  int components = 1;      // size of the c axis (1 for scalar arrays, which have no c axis)
  bool has_component_axis = false;
  Index3 size{1, 1, 1};    // x, y, z
  Index3 chunk{1, 1, 1};   // x, y, z
  index_t component_chunk = 1;
  PixelType pixel_type = PixelType::Float32;
  bool big_endian = false;
  Codec codec;
  bool has_fill = true;    // false when fill_value is null
  double fill = 0.0;
  char separator = '/';    // dimension_separator: '/' or '.'
  std::string key_prefix;  // before the chunk indices: "" (v2), "c/" (v3's default key encoding)

  /// Bytes of one decoded chunk.
  std::size_t chunk_bytes() const;
  /// Chunks along z, y, x.
  Index3 chunk_counts() const;
  /// The file of chunk (c, kz, ky, kx) (c ignored without a component axis).
  std::string chunk_path(index_t c, index_t kz, index_t ky, index_t kx) const;
};

/// What create_store writes.
struct StoreSpec {
  Geometry grid;                       // of level 0
  int components = 1;                  // 1: image (z, y, x); 3: displacement field (c, z, y, x)
  PixelType pixel_type = PixelType::Float32;
  Index3 chunk{64, 64, 64};            // x, y, z; clipped to the grid
  Codec codec;                         // Blosc zstd level 1 with byte shuffle by default
  int levels = 1;                      // pyramid levels including level 0
  std::string downsampling = "mean";   // NGFF multiscales "type": "mean" or "mode"
  std::string name;                    // NGFF multiscales "name" (optional)

  /// The spec gigareg writes for a grid with the process-wide options (gigareg::zarr_options()).
  static StoreSpec for_grid(const Geometry& grid, int components, PixelType pixel_type);
};

/// The grid of pyramid level `level` of a level-0 grid: each axis longer than one voxel halved
/// (rounded up) per level, voxel centres at the centres of the 2x2x2 blocks they summarise
/// (docs/zarr.md, "Pyramid").
Geometry level_geometry(const Geometry& level0, int level);

/// Creates `dir` (new, or an existing empty directory such as a StagedFile's temporary; its
/// parent must exist) with the group and array metadata of `spec` and no chunks. Call it once per
/// store. Errors name `name` (the final path the user gave; `dir` when empty).
void create_store(const std::string& dir, const StoreSpec& spec, const std::string& name = "");

/// A store opened for reading and writing chunks.
class Store {
 public:
  /// Reads and checks the metadata of the store in directory `dir`: the group, its NGFF
  /// multiscales, gigareg's geometry key when present, and every level's .zarray. Errors are
  /// Error(InvalidInput) (Io when `dir` is missing or unreadable) naming `name` (or `dir`) and
  /// the file at fault.
  static Store open(const std::string& dir, const std::string& name = "");

  /// Level 0's header (geometry in gigareg's LPS convention, the array's pixel type, components).
  const ImageHeader& header() const { return header_; }
  int levels() const { return int(arrays_.size()); }
  const ArrayInfo& array(int level) const { return arrays_.at(std::size_t(level)); }
  const Geometry& geometry(int level) const { return grids_.at(std::size_t(level)); }
  /// Whether gigareg wrote the store (then every chunk exists and a missing one is an error).
  bool complete() const { return complete_; }
  /// Whether it is a Zarr v3 (NGFF 0.5) store: read only (write_planes refuses).
  bool zarr_v3() const { return v3_; }
  const std::string& name() const { return name_; }

  /// Reads the planes [z0, z0 + nz) of `level` into dst: `components` planar blocks of
  /// nx * ny * nz floats (as a Volume of that slab holds them). Only the chunks that overlap the
  /// planes are read, decoded on all cores. Values become float as read_image converts them:
  /// integers beyond 2^24 are an error, float64 is rounded. A missing chunk reads as the array's
  /// fill_value when the store is not gigareg's own and has one; otherwise, and for a corrupt or
  /// truncated chunk, Error(InvalidInput) naming the chunk.
  void read_planes(int level, index_t z0, index_t nz, float* dst) const;

  /// Writes the planes [z0, z0 + nz) of `level` from src (the layout read_planes fills). z0 must
  /// be a multiple of the chunk's z size and z0 + nz too, or the end of the array, so that every
  /// chunk is written whole by one caller; chunks past the grid's edge are padded with zeros.
  /// Float values become the array's type as write_image converts them (`conversion`). Each chunk
  /// file is created exclusively (no link followed) and flushed to disk (fsync).
  void write_planes(int level, index_t z0, index_t nz, const float* src,
                    IntegerConversion conversion = IntegerConversion::Exact) const;

 private:
  std::string dir_, name_;
  ImageHeader header_;
  std::vector<ArrayInfo> arrays_;
  std::vector<Geometry> grids_;
  bool complete_ = false;
  bool v3_ = false;
};

/// The first plane at or after `z` where a chunk of z size `chunk_z` starts (or `planes`, the
/// array's end): a writer that owns planes [a, b) of a distributed grid writes the chunk-aligned
/// range [chunk_boundary(a), chunk_boundary(b)), which needs planes of its successor when b is
/// not a boundary. Ranges so derived from consecutive slabs cover the array once.
index_t chunk_boundary(index_t z, index_t chunk_z, index_t planes);

/// Writes a whole volume (1 component: image with `pixel_type`; 3: displacement field) as a store
/// of `levels` pyramid levels (a device volume: level 0 only, copied to the host by rows of
/// chunks) (level 0 = the volume; others downsampled with
/// `downsampling`, "mean" or "mode"), staged: the store appears under `path` complete or not at
/// all (joins the open OutputSet).
void write_volume(const std::string& path, const Volume<float>& volume, PixelType pixel_type,
                  IntegerConversion conversion, int levels = 1,
                  const std::string& downsampling = "mean");

/// The 2x2x2 reduction of one pyramid level to the next (`mode`: the most frequent value of each
/// block, ties to the smallest; else the mean, in double, of the voxels present at odd edges).
/// Per component; the result's grid is level_geometry(v's grid, 1).
Volume<float> downsample(const Volume<float>& v, bool mode);

}  // namespace gigareg::zarr
