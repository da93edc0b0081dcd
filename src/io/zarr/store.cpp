// Zarr v2 directory stores holding an NGFF 0.4 multiscale image (src/io/zarr.hpp; the format is
// described in docs/zarr.md). Metadata through nlohmann's JSON (ordered objects: the bytes of
// every file are fixed by its content), chunks through codec.cpp, chunk I/O on all cores.

#include "io/zarr.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "io/io_internal.hpp"
#include "io/parallel_for.hpp"
#include "io/pixel_convert.hpp"

namespace gigareg::zarr {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;
using io_detail::dispatch;

// The largest decoded chunk gigareg reads or writes: Blosc 1 frames hold < 2 GiB, and a chunk is
// held once per thread while decoding.
constexpr std::size_t kMaxChunkBytes = std::size_t(1) << 30;
// The largest extent of one axis: NIfTI's limit is 32767; 2^31 keeps every product of two
// extents and every plane index far from overflow while allowing any real scanner or microscope.
constexpr index_t kMaxExtent = index_t(1) << 31;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw_error(ErrorKind::InvalidInput, where, what);
}

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// What the user called the store, and the file inside it, for messages: "out.zarr (0/.zarray)".
std::string where_in(const std::string& name, const std::string& file) {
  return file.empty() ? name : name + " (" + file + ")";
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// A whole metadata file into `out`; false when it does not exist.
bool read_text(const std::string& path, std::string& out, const std::string& where) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw_error(ErrorKind::Io, where, std::string("cannot access: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) bad(where, "is not a regular file");
  if (st.st_size > (off_t(64) << 20)) bad(where, "is larger than 64 MiB: not metadata");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error(ErrorKind::Io, where, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw_error(ErrorKind::Io, where, "reading failed");
  out = s.str();
  return true;
}

Json parse_json(const std::string& text, const std::string& where) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    bad(where, std::string("malformed JSON: ") + e.what());
  }
}

Json read_json(const std::string& path, const std::string& where, const char* what_missing) {
  std::string text;
  if (!read_text(path, text, where)) bad(where, std::string("missing (") + what_missing + ")");
  return parse_json(text, where);
}

// Writes a new metadata file (exclusively, no link followed).
void write_new_file(const std::string& path, const void* data, std::size_t size, bool sync,
                    const std::string& where) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int err = errno;
    throw_error(ErrorKind::Io, where,
                err == EEXIST ? "already exists: every chunk and metadata file is written once "
                                "(two writers of the same chunk?)"
                              : std::string("cannot create: ") + std::strerror(err));
  }
  int err = io_detail::write_fully(fd, data, size);
  if (err == 0 && sync && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0)
    throw_error(ErrorKind::Io, where,
                std::string("writing failed (disk full or file size limit?): ") + std::strerror(err));
}

void write_json(const std::string& path, const OrderedJson& j, const std::string& where) {
  const std::string text = j.dump(4) + "\n";
  write_new_file(path, text.data(), text.size(), true, where);
}

// A directory that may already exist (made by another writer of the store), never a link.
void make_directory(const std::string& path, const std::string& where) {
  if (::mkdir(path.c_str(), 0777) == 0) return;
  const int err = errno;
  struct stat st {};
  if (err == EEXIST && ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
  throw_error(ErrorKind::Io, where,
              err == EEXIST ? "'" + path + "' exists and is not a directory (a link or a file)"
                            : "cannot create the directory '" + path + "': " + std::strerror(err));
}

// ---------------------------------------------------------------------------------------------
// dtype

std::string dtype_of(PixelType t) {
  switch (t) {
    case PixelType::UInt8: return "|u1";
    case PixelType::Int8: return "|i1";
    case PixelType::UInt16: return "<u2";
    case PixelType::Int16: return "<i2";
    case PixelType::UInt32: return "<u4";
    case PixelType::Int32: return "<i4";
    case PixelType::UInt64: return "<u8";
    case PixelType::Int64: return "<i8";
    case PixelType::Float32: return "<f4";
    case PixelType::Float64: return "<f8";
  }
  return "?";
}

void parse_dtype(const Json& j, ArrayInfo& a, const std::string& where) {
  if (!j.is_string()) bad(where, "'dtype' must be a string such as \"<f4\", got " + j.dump());
  const std::string s = j.get<std::string>();
  static const std::pair<const char*, PixelType> types[] = {
      {"u1", PixelType::UInt8},  {"i1", PixelType::Int8},   {"u2", PixelType::UInt16},
      {"i2", PixelType::Int16},  {"u4", PixelType::UInt32}, {"i4", PixelType::Int32},
      {"u8", PixelType::UInt64}, {"i8", PixelType::Int64},  {"f4", PixelType::Float32},
      {"f8", PixelType::Float64}};
  if (s.size() == 3 && (s[0] == '<' || s[0] == '>' || s[0] == '|'))
    for (const auto& [code, type] : types)
      if (s.compare(1, 2, code) == 0) {
        a.pixel_type = type;
        a.big_endian = s[0] == '>' && size_of(type) > 1;
        return;
      }
  bad(where, "unsupported dtype '" + s +
                 "' (gigareg reads the integer and float types u1 i1 u2 i2 u4 i4 u8 i8 f4 f8)");
}

// ---------------------------------------------------------------------------------------------
// Axis extents and chunk shapes

index_t positive_extent(const Json& v, const char* what, const std::string& where) {
  if (!v.is_number_integer() || v.get<long long>() < 1 || v.get<long long>() > kMaxExtent)
    bad(where, std::string("every ") + what + " entry must be an integer in 1.." +
                   std::to_string(kMaxExtent) + ", got " + v.dump());
  return index_t(v.get<long long>());
}

// The parts of an array's metadata that Zarr v2 and v3 share: shape and chunk shape (3 or 4
// axes), sizes checked against overflow and the chunk size limit, and the fill value.
void set_shape(ArrayInfo& a, const Json& shape, const Json& chunks, const std::string& dtype,
               const std::string& where) {
  if (!shape.is_array() || (shape.size() != 3 && shape.size() != 4))
    bad(where, "'shape' must list 3 (z, y, x) or 4 (c, z, y, x) extents, got " + shape.dump());
  if (!chunks.is_array() || chunks.size() != shape.size())
    bad(where, "the chunk shape " + chunks.dump() + " does not match 'shape' " + shape.dump());
  const std::size_t d = shape.size() - 3;
  a.has_component_axis = d == 1;
  if (a.has_component_axis) {
    a.components = int(positive_extent(shape[0], "shape", where));
    a.component_chunk = positive_extent(chunks[0], "chunks", where);
  }
  for (int axis = 0; axis < 3; ++axis) {  // JSON (z, y, x) -> Index3 (x, y, z)
    a.size[2 - axis] = positive_extent(shape[d + std::size_t(axis)], "shape", where);
    a.chunk[2 - axis] = positive_extent(chunks[d + std::size_t(axis)], "chunks", where);
  }
  std::size_t bytes = size_of(a.pixel_type);
  for (index_t e : {a.component_chunk, a.chunk.x, a.chunk.y, a.chunk.z})
    if (__builtin_mul_overflow(bytes, std::size_t(e), &bytes) || bytes > kMaxChunkBytes)
      bad(where, "a chunk of " + chunks.dump() + " " + dtype +
                     " values is larger than the 1 GiB gigareg decodes at once");
  index_t voxels = 0;
  if (__builtin_mul_overflow(a.size.x * a.size.y, a.size.z, &voxels) ||
      __builtin_mul_overflow(voxels, index_t(a.components), &voxels))
    bad(where, "the shape " + shape.dump() + " overflows 64-bit voxel counts");
}

void set_fill(ArrayInfo& a, const Json& fill, const std::string& where) {
  if (fill.is_null()) {
    a.has_fill = false;
  } else if (fill.is_number()) {
    a.fill = fill.get<double>();
  } else if (fill == "NaN") {
    a.fill = std::numeric_limits<double>::quiet_NaN();
  } else if (fill == "Infinity" || fill == "-Infinity") {
    a.fill = fill == "Infinity" ? HUGE_VAL : -HUGE_VAL;
  } else {
    bad(where, "unusable fill_value " + fill.dump());
  }
}

// A pyramid level's array metadata file (`file` in the level's folder): a JSON object holding
// every one of `keys`; `where` names it in errors, `array.path` is the level's folder.
struct LevelMetadata {
  std::string where;
  ArrayInfo array;
  Json json;
};

LevelMetadata read_level_metadata(const std::string& dir, const std::string& name, const std::string& level_path,
                                  const char* file, std::initializer_list<const char*> keys) {
  LevelMetadata m;
  m.where = where_in(name, level_path + "/" + file);
  m.array.path = join(dir, level_path);
  m.json = read_json(join(m.array.path, file), m.where, "the array metadata of a pyramid level");
  if (!m.json.is_object()) bad(m.where, "must hold a JSON object");
  for (const char* key : keys)
    if (!m.json.contains(key)) bad(m.where, std::string("has no '") + key + "'");
  return m;
}

// Reads and checks one level's .zarray (Zarr v2).
ArrayInfo read_array(const std::string& dir, const std::string& name, const std::string& level_path) {
  LevelMetadata m = read_level_metadata(dir, name, level_path, ".zarray",
                                        {"zarr_format", "shape", "chunks", "dtype", "compressor", "fill_value", "order"});
  auto& [where, a, j] = m;
  if (j.at("zarr_format") != 2) bad(where, "zarr_format must be 2, got " + j.at("zarr_format").dump());
  if (j.at("order") != "C")
    bad(where, "order " + j.at("order").dump() + " is not read (gigareg reads C-ordered arrays)");
  if (j.contains("filters") && !j.at("filters").is_null() &&
      !(j.at("filters").is_array() && j.at("filters").empty()))
    bad(where, "filters " + j.at("filters").dump() + " are not supported (only a compressor)");
  parse_dtype(j.at("dtype"), a, where);
  set_shape(a, j.at("shape"), j.at("chunks"), j.at("dtype").get<std::string>(), where);
  a.codec = Codec::from_json(j.at("compressor"), where);
  set_fill(a, j.at("fill_value"), where);
  if (j.contains("dimension_separator")) {
    const Json& s = j.at("dimension_separator");
    if (s != "/" && s != ".") bad(where, "dimension_separator must be \"/\" or \".\", got " + s.dump());
    a.separator = s.get<std::string>()[0];
  } else {
    a.separator = '.';  // Zarr v2's default
  }
  return a;
}

// Reads and checks one level's zarr.json (Zarr v3, NGFF 0.5): regular chunk grid, default or v2
// chunk key encoding, codecs "bytes" + at most one of blosc / gzip / zstd (no sharding).
ArrayInfo read_array_v3(const std::string& dir, const std::string& name, const std::string& level_path) {
  LevelMetadata m = read_level_metadata(dir, name, level_path, "zarr.json",
                                        {"zarr_format", "node_type", "shape", "data_type", "chunk_grid", "fill_value", "codecs"});
  auto& [where, a, j] = m;
  if (j.at("zarr_format") != 3 || j.at("node_type") != "array")
    bad(where, "must describe a Zarr v3 array (zarr_format 3, node_type \"array\")");
  if (j.contains("storage_transformers") && !j.at("storage_transformers").empty())
    bad(where, "storage transformers are not supported");
  static const std::pair<const char*, const char*> types[] = {
      {"uint8", "|u1"}, {"int8", "|i1"}, {"uint16", "<u2"}, {"int16", "<i2"}, {"uint32", "<u4"},
      {"int32", "<i4"}, {"uint64", "<u8"}, {"int64", "<i8"}, {"float32", "<f4"}, {"float64", "<f8"}};
  const Json& dt = j.at("data_type");
  std::string dtype;
  for (const auto& [v3, v2] : types)
    if (dt == v3) dtype = v2;
  if (dtype.empty())
    bad(where, "unsupported data_type " + dt.dump() + " (gigareg reads the integer and float types)");
  parse_dtype(Json(dtype), a, where);
  const Json& grid = j.at("chunk_grid");
  if (!grid.is_object() || grid.value("name", "") != "regular" || !grid.contains("configuration") ||
      !grid.at("configuration").contains("chunk_shape"))
    bad(where, "the chunk_grid must be \"regular\" with a chunk_shape");
  set_shape(a, j.at("shape"), grid.at("configuration").at("chunk_shape"), dt.get<std::string>(), where);
  a.codec = Codec::from_v3_json(j.at("codecs"), a.big_endian, where);
  if (size_of(a.pixel_type) == 1) a.big_endian = false;
  set_fill(a, j.at("fill_value"), where);
  a.key_prefix = "c/";
  a.separator = '/';
  if (j.contains("chunk_key_encoding")) {
    const Json& e = j.at("chunk_key_encoding");
    const std::string kind = e.is_object() ? e.value("name", "") : "";
    const Json conf = e.is_object() && e.contains("configuration") ? e.at("configuration") : Json::object();
    if (kind == "default") {
      a.separator = conf.value("separator", "/")[0];
    } else if (kind == "v2") {
      a.key_prefix.clear();
      a.separator = conf.value("separator", ".")[0];
    } else {
      bad(where, "unknown chunk_key_encoding " + e.dump());
    }
    if (a.separator != '/' && a.separator != '.') bad(where, "the chunk key separator must be / or .");
    if (kind == "default") a.key_prefix = std::string("c") + a.separator;
  }
  return a;
}

double unit_to_mm(const Json& axis, const std::string& where) {
  if (!axis.contains("unit")) return 1.0;  // gigareg's unit when none is said
  const Json& u = axis.at("unit");
  static const std::pair<const char*, double> units[] = {
      {"millimeter", 1.0}, {"micrometer", 1e-3}, {"nanometer", 1e-6}, {"centimeter", 10.0},
      {"meter", 1e3}};
  for (const auto& [n, f] : units)
    if (u == n) return f;
  bad(where, "axis unit " + u.dump() + " is not a length gigareg converts to millimetres "
             "(meter, centimeter, millimeter, micrometer, nanometer)");
}

Mat3d inverse(const Mat3d& a) {
  const double det = determinant(a);
  Mat3d r{};
  r(0, 0) = (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1)) / det;
  r(0, 1) = (a(0, 2) * a(2, 1) - a(0, 1) * a(2, 2)) / det;
  r(0, 2) = (a(0, 1) * a(1, 2) - a(0, 2) * a(1, 1)) / det;
  r(1, 0) = (a(1, 2) * a(2, 0) - a(1, 0) * a(2, 2)) / det;
  r(1, 1) = (a(0, 0) * a(2, 2) - a(0, 2) * a(2, 0)) / det;
  r(1, 2) = (a(0, 2) * a(1, 0) - a(0, 0) * a(1, 2)) / det;
  r(2, 0) = (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)) / det;
  r(2, 1) = (a(0, 1) * a(2, 0) - a(0, 0) * a(2, 1)) / det;
  r(2, 2) = (a(0, 0) * a(1, 1) - a(0, 1) * a(1, 0)) / det;
  return r;
}

// NGFF translation of a grid: its origin in the grid's own axes (docs/zarr.md, "Geometry"):
// p = D (diag(s) i + t), so t = D^-1 origin; t = origin when the direction is the identity.
Vec3d ngff_translation(const Geometry& g) { return inverse(g.direction) * g.origin; }

OrderedJson zyx(Vec3d v, bool component_axis, double component_value) {
  OrderedJson a = OrderedJson::array();
  if (component_axis) a.push_back(component_value);
  a.push_back(v.z);
  a.push_back(v.y);
  a.push_back(v.x);
  return a;
}

bool is_mode(const std::string& downsampling) { return downsampling == "mode"; }

}  // namespace

// -----------------------------------------------------------------------------------------------
std::size_t ArrayInfo::chunk_bytes() const {
  return std::size_t(component_chunk * chunk.x * chunk.y * chunk.z) * size_of(pixel_type);
}

Index3 ArrayInfo::chunk_counts() const {
  return {(size.x + chunk.x - 1) / chunk.x, (size.y + chunk.y - 1) / chunk.y,
          (size.z + chunk.z - 1) / chunk.z};
}

std::string ArrayInfo::chunk_path(index_t c, index_t kz, index_t ky, index_t kx) const {
  std::string key = key_prefix;
  if (has_component_axis) key += std::to_string(c) + separator;
  key += std::to_string(kz) + separator + std::to_string(ky) + separator + std::to_string(kx);
  return join(path, key);
}

StoreSpec StoreSpec::for_grid(const Geometry& grid, int components, PixelType pixel_type) {
  StoreSpec s;
  s.grid = grid;
  s.components = components;
  s.pixel_type = pixel_type;
  const ZarrOptions o = zarr_options();
  s.chunk = o.chunk;
  if (o.codec == "none") {
    s.codec.kind = Codec::Kind::None;
  } else {
    s.codec.kind = Codec::Kind::Blosc;
    s.codec.cname = o.codec;
    s.codec.clevel = o.level;
    s.codec.shuffle = 1;
  }
  return s;
}

Geometry level_geometry(const Geometry& level0, int level) {
  Geometry g = level0;
  for (int k = 0; k < level; ++k) {
    Vec3d shift{0, 0, 0};
    for (int a = 0; a < 3; ++a) {
      if (g.size[a] < 2) continue;
      shift[a] = 0.5 * g.spacing[a];  // the centre of voxels 2i and 2i+1
      g.size[a] = (g.size[a] + 1) / 2;
      g.spacing[a] *= 2;
    }
    g.origin = g.origin + g.direction * shift;
  }
  return g;
}

index_t chunk_boundary(index_t z, index_t chunk_z, index_t planes) {
  const index_t b = (z + chunk_z - 1) / chunk_z * chunk_z;
  return std::min(b, planes);
}

void create_store(const std::string& dir, const StoreSpec& spec, const std::string& name_arg) {
  const std::string name = name_arg.empty() ? dir : name_arg;
  if (spec.components != 1 && spec.components != 3)
    throw_error(ErrorKind::InvalidArgument, name, "a store holds 1 (image) or 3 (field) components");
  if (spec.levels < 1 || spec.levels > 17)
    throw_error(ErrorKind::InvalidArgument, name, "pyramid levels must be 1-17");
  if (spec.downsampling != "mean" && spec.downsampling != "mode")
    throw_error(ErrorKind::InvalidArgument, name, "downsampling must be \"mean\" or \"mode\"");
  try {
    spec.grid.validate(name);
  } catch (const Error& e) {
    throw_error(ErrorKind::InvalidArgument, name, e.problem());
  }
  // The directory: new, or the empty one a StagedFile made for it.
  if (::mkdir(dir.c_str(), 0777) != 0) {
    struct stat st {};
    if (errno != EEXIST || ::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw_error(ErrorKind::Io, name, "cannot create the store's directory '" + dir + "': " +
                                           std::strerror(errno));
    if (exists(join(dir, ".zgroup")) || exists(join(dir, ".zattrs")))
      throw_error(ErrorKind::Io, name, "'" + dir + "' already holds a store");
  }
  const bool field = spec.components == 3;
  OrderedJson axes = OrderedJson::array();
  if (field) axes.push_back({{"name", "c"}, {"type", "channel"}});
  for (const char* a : {"z", "y", "x"}) axes.push_back({{"name", a}, {"type", "space"}, {"unit", "millimeter"}});

  OrderedJson datasets = OrderedJson::array();
  for (int k = 0; k < spec.levels; ++k) {
    const Geometry g = level_geometry(spec.grid, k);
    OrderedJson scale = {{"type", "scale"}, {"scale", zyx(g.spacing, field, 1.0)}};
    OrderedJson translation = {{"type", "translation"},
                               {"translation", zyx(ngff_translation(g), field, 0.0)}};
    datasets.push_back({{"path", std::to_string(k)},
                        {"coordinateTransformations", OrderedJson::array({scale, translation})}});
  }
  OrderedJson multiscale;
  multiscale["version"] = "0.4";
  if (!spec.name.empty()) multiscale["name"] = spec.name;
  multiscale["axes"] = axes;
  multiscale["datasets"] = datasets;
  multiscale["type"] = spec.downsampling;
  multiscale["metadata"] = {
      {"description", is_mode(spec.downsampling)
                          ? "each level: the most frequent value of each 2x2x2 block of the level "
                            "above (ties: the smallest value)"
                          : "each level: the mean of each 2x2x2 block of the level above"},
      {"method", "gigareg"}};

  OrderedJson direction = OrderedJson::array();
  for (int r = 0; r < 3; ++r)
    direction.push_back({spec.grid.direction(r, 0), spec.grid.direction(r, 1), spec.grid.direction(r, 2)});
  OrderedJson ours;
  ours["version"] = 1;
  ours["kind"] = field ? "displacement_field" : "image";
  ours["space"] = "LPS";
  ours["unit"] = "millimeter";
  ours["origin"] = {spec.grid.origin.x, spec.grid.origin.y, spec.grid.origin.z};
  ours["direction"] = direction;
  ours["complete"] = true;
  if (field) ours["components"] = "c = 0, 1, 2: displacement along LPS x, y, z in mm";

  OrderedJson attrs;
  attrs["multiscales"] = OrderedJson::array({multiscale});
  attrs[kAttributesKey] = ours;
  write_json(join(dir, ".zgroup"), OrderedJson{{"zarr_format", 2}}, where_in(name, ".zgroup"));
  write_json(join(dir, ".zattrs"), attrs, where_in(name, ".zattrs"));

  for (int k = 0; k < spec.levels; ++k) {
    const Geometry g = level_geometry(spec.grid, k);
    const std::string level_dir = join(dir, std::to_string(k));
    make_directory(level_dir, name);
    Index3 chunk = spec.chunk;
    for (int a = 0; a < 3; ++a) {
      if (chunk[a] < 1) throw_error(ErrorKind::InvalidArgument, name, "chunk sizes must be positive");
      chunk[a] = std::min(chunk[a], g.size[a]);
    }
    OrderedJson shape = OrderedJson::array(), chunks = OrderedJson::array();
    if (field) {
      shape.push_back(3);
      chunks.push_back(1);
    }
    for (int a = 2; a >= 0; --a) {
      shape.push_back(g.size[a]);
      chunks.push_back(chunk[a]);
    }
    OrderedJson zarray;  // keys in zarr-python's (alphabetical) order
    zarray["chunks"] = chunks;
    zarray["compressor"] = spec.codec.to_json();
    zarray["dimension_separator"] = "/";
    zarray["dtype"] = dtype_of(spec.pixel_type);
    zarray["fill_value"] = 0;
    zarray["filters"] = nullptr;
    zarray["order"] = "C";
    zarray["shape"] = shape;
    zarray["zarr_format"] = 2;
    write_json(join(level_dir, ".zarray"), zarray, where_in(name, std::to_string(k) + "/.zarray"));
  }
}

// -----------------------------------------------------------------------------------------------
// Opening a store

namespace {

// The group's attributes as {"multiscales", "gigareg"}: from .zgroup / .zattrs (Zarr v2, NGFF
// 0.4) or from zarr.json's "attributes" with "ome" {"version": "0.5", "multiscales"} (Zarr v3).
// `where` receives the file they came from, for messages.
Json group_attributes(const std::string& dir, const std::string& name, bool v3, std::string& where) {
  if (v3) {
    where = where_in(name, "zarr.json");
    const Json group = read_json(join(dir, "zarr.json"), where, "");
    if (!group.is_object() || group.value("zarr_format", 0) != 3)
      bad(where, "must hold a Zarr v3 node (zarr_format 3)");
    if (group.value("node_type", "") == "array")
      bad(name, "is a bare Zarr array without OME-NGFF metadata: its voxel spacing and position "
                "are unknown");
    const Json no_attributes = Json::object();
    const Json& at = group.contains("attributes") ? group.at("attributes") : no_attributes;
    if (!at.is_object() || !at.contains("ome") || !at.at("ome").is_object())
      bad(where, "has no OME-NGFF 'ome' attributes");
    const Json& ome = at.at("ome");
    if (ome.value("version", "") != "0.5")
      bad(where, "a Zarr v3 store must hold NGFF 0.5 ('ome' version \"0.5\"), got " +
                     (ome.contains("version") ? ome.at("version").dump() : std::string("none")));
    Json attrs = Json::object();
    if (ome.contains("multiscales")) attrs["multiscales"] = ome.at("multiscales");
    if (at.contains(kAttributesKey)) attrs[kAttributesKey] = at.at(kAttributesKey);
    return attrs;
  }
  if (!exists(join(dir, ".zgroup"))) {
    if (exists(join(dir, ".zarray")))
      bad(name, "is a bare Zarr array without OME-NGFF metadata (.zgroup, .zattrs): its voxel "
                "spacing and position are unknown");
    bad(where_in(name, ".zgroup"), "missing: not a Zarr group (no .zgroup, no zarr.json)");
  }
  const Json group = read_json(join(dir, ".zgroup"), where_in(name, ".zgroup"), "");
  if (!group.is_object() || !group.contains("zarr_format") || group.at("zarr_format") != 2)
    bad(where_in(name, ".zgroup"), "must be {\"zarr_format\": 2}");
  where = where_in(name, ".zattrs");
  return read_json(join(dir, ".zattrs"), where, "the OME-NGFF multiscales metadata that gives the geometry");
}

// Checks the multiscales axes: (z, y, x) of type space, or (c, z, y, x) with c a channel axis.
// Returns whether there is a component axis; `unit` receives each space axis' unit in mm (x, y, z).
bool check_axes(const Json& axes, Vec3d& unit, const std::string& where) {
  if (!axes.is_array() || (axes.size() != 3 && axes.size() != 4))
    bad(where, "expected axes (z, y, x) or (c, z, y, x), got " + axes.dump());
  const bool field_axes = axes.size() == 4;
  unit = {1, 1, 1};
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const Json& a = axes[i];
    if (!a.is_object() || !a.contains("name") || !a.at("name").is_string())
      bad(where, "axis " + std::to_string(i) + " is not an object with a 'name'");
    if (field_axes && i == 0) {
      if (a.contains("type") && a.at("type") != "channel")
        bad(where, "the first of 4 axes must be the channel (component) axis, got " + a.dump());
      continue;
    }
    const std::size_t k = i - (field_axes ? 1 : 0);  // 0 z, 1 y, 2 x
    const char* expected = k == 0 ? "z" : (k == 1 ? "y" : "x");
    if (a.at("name") != expected || (a.contains("type") && a.at("type") != "space"))
      bad(where, "expected space axes z, y, x in that order, got " + axes.dump());
    unit[int(2 - k)] = unit_to_mm(a, where);
  }
  return field_axes;
}

// gigareg's key: the exact origin and the direction, which NGFF 0.4 cannot express.
struct OurAttributes {
  bool present = false;
  bool complete = false;
  Vec3d origin{0, 0, 0};
  Mat3d direction = Mat3d::identity();
};

OurAttributes our_attributes(const Json& attrs, const std::string& attrs_where) {
  OurAttributes o;
  if (!attrs.contains(kAttributesKey)) return o;
  const Json& g = attrs.at(kAttributesKey);
  const std::string w = attrs_where + " '" + kAttributesKey + "'";
  auto numbers = [&](const Json& v, std::size_t n) {
    if (!v.is_array() || v.size() != n) return false;
    for (const Json& x : v)
      if (!x.is_number() || !std::isfinite(x.get<double>())) return false;
    return true;
  };
  if (!g.is_object() || !g.contains("origin") || !numbers(g.at("origin"), 3))
    bad(w, "must hold 'origin': three finite numbers (LPS mm)");
  if (!g.contains("direction") || !g.at("direction").is_array() || g.at("direction").size() != 3 ||
      !numbers(g.at("direction")[0], 3) || !numbers(g.at("direction")[1], 3) ||
      !numbers(g.at("direction")[2], 3))
    bad(w, "must hold 'direction': three rows of three finite numbers");
  if (g.contains("space") && g.at("space") != "LPS") bad(w, "'space' must be \"LPS\"");
  for (int r = 0; r < 3; ++r) {
    o.origin[r] = g.at("origin")[std::size_t(r)].get<double>();
    for (int c = 0; c < 3; ++c)
      o.direction(r, c) = g.at("direction")[std::size_t(r)][std::size_t(c)].get<double>();
  }
  if (!(std::fabs(determinant(o.direction)) > 1e-12)) bad(w, "'direction' is singular");
  o.complete = g.contains("complete") && g.at("complete") == true;
  o.present = true;
  return o;
}

// One level's grid from its dataset's scale and translation (in the axes' units, (c,) z, y, x
// order): p = D (diag(scale) i + translation).
Geometry dataset_geometry(const Json& d, std::size_t axes, const Vec3d& unit, const Mat3d& direction,
                          Index3 size, const std::string& w) {
  if (!d.contains("coordinateTransformations") || !d.at("coordinateTransformations").is_array())
    bad(w, "has no 'coordinateTransformations'");
  Vec3d spacing{1, 1, 1}, translation{0, 0, 0};
  bool have_scale = false;
  for (const Json& t : d.at("coordinateTransformations")) {
    if (!t.is_object() || !t.contains("type")) bad(w, "a coordinate transformation has no 'type'");
    const bool is_scale = t.at("type") == "scale", is_translation = t.at("type") == "translation";
    if (!is_scale && !is_translation)
      bad(w, "coordinate transformation " + t.at("type").dump() + " is not supported");
    const char* key = is_scale ? "scale" : "translation";
    if (!t.contains(key) || !t.at(key).is_array() || t.at(key).size() != axes)
      bad(w, std::string("'") + key + "' must list one number per axis (" + std::to_string(axes) + ")");
    for (int ax = 0; ax < 3; ++ax) {
      const Json& v = t.at(key)[axes - 1 - std::size_t(ax)];
      if (!v.is_number() || !std::isfinite(v.get<double>())) bad(w, std::string("non-finite ") + key);
      (is_scale ? spacing : translation)[ax] = v.get<double>() * unit[ax];
    }
    have_scale = have_scale || is_scale;
  }
  if (!have_scale) bad(w, "has no scale transformation");
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.direction = direction;
  g.origin = direction * translation;
  return g;
}

}  // namespace

Store Store::open(const std::string& dir, const std::string& name_arg) {
  Store s;
  s.dir_ = dir;
  s.name_ = name_arg.empty() ? dir : name_arg;
  const std::string& name = s.name_;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    throw_error(ErrorKind::Io, name, errno == ENOENT ? "does not exist"
                                                     : std::string("cannot access: ") + std::strerror(errno));
  if (!S_ISDIR(st.st_mode))
    throw_error(ErrorKind::InvalidInput, name, "is not a directory (a .zarr store is a directory)");
  const bool v3 = !exists(join(dir, ".zgroup")) && exists(join(dir, "zarr.json"));
  s.v3_ = v3;
  std::string attrs_where;
  const Json attrs = group_attributes(dir, name, v3, attrs_where);
  if (!attrs.is_object() || !attrs.contains("multiscales") || !attrs.at("multiscales").is_array() ||
      attrs.at("multiscales").empty() || !attrs.at("multiscales")[0].is_object())
    bad(attrs_where, "has no OME-NGFF 'multiscales' list");
  const Json& ms = attrs.at("multiscales")[0];
  if (!v3 && ms.contains("version") && ms.at("version") != "0.4")
    bad(attrs_where, "multiscales version " + ms.at("version").dump() +
                         " is not read in a Zarr v2 store (gigareg reads NGFF 0.4 on v2, 0.5 on v3)");
  if (!ms.contains("axes")) bad(attrs_where, "multiscales has no 'axes' list");
  const std::size_t axes = ms.at("axes").size();
  Vec3d unit;
  const bool field_axes = check_axes(ms.at("axes"), unit, attrs_where);
  if (ms.contains("coordinateTransformations"))
    bad(attrs_where, "multiscales-wide coordinateTransformations are not supported");
  if (!ms.contains("datasets") || !ms.at("datasets").is_array() || ms.at("datasets").empty())
    bad(attrs_where, "multiscales has no 'datasets'");
  const OurAttributes ours = our_attributes(attrs, attrs_where);
  s.complete_ = ours.complete;

  const Json& datasets = ms.at("datasets");
  for (std::size_t k = 0; k < datasets.size(); ++k) {
    const Json& d = datasets[k];
    const std::string w = attrs_where + " dataset " + std::to_string(k);
    if (!d.is_object() || !d.contains("path") || !d.at("path").is_string()) bad(w, "has no 'path'");
    const std::string path = d.at("path").get<std::string>();
    if (path.empty() || path.find("..") != std::string::npos || path[0] == '/')
      bad(w, "path '" + path + "' does not name a directory inside the store");
    ArrayInfo a = v3 ? read_array_v3(dir, name, path) : read_array(dir, name, path);
    const std::string aw = where_in(name, path + (v3 ? "/zarr.json" : "/.zarray"));
    if (a.has_component_axis != field_axes)
      bad(aw, "has " + std::to_string(a.has_component_axis ? 4 : 3) + " dimensions but the "
              "multiscales axes are " + std::to_string(axes));
    if (field_axes && a.components != 3)
      bad(aw, "a displacement field needs 3 components (c = 3), got " + std::to_string(a.components));
    if (!s.arrays_.empty() && (a.pixel_type != s.arrays_[0].pixel_type || a.components != s.arrays_[0].components))
      bad(aw, "its dtype or components differ from level 0's");
    Geometry g = dataset_geometry(d, axes, unit, ours.direction, a.size, w);
    if (k == 0 && ours.present) {
      // The exact origin is gigareg's; the translation must agree with it, or another tool
      // changed one of them (then the geometry is ambiguous).
      const Vec3d d_origin = g.origin - ours.origin;
      const double tol = 1e-6 * (1.0 + std::sqrt(dot(ours.origin, ours.origin)));
      if (!(std::sqrt(dot(d_origin, d_origin)) <= tol))
        bad(w, "the NGFF translation disagrees with the origin in the '" + std::string(kAttributesKey) +
                   "' attributes (one of them was changed by another tool?)");
      g.origin = ours.origin;
    }
    try {
      g.validate(w);
    } catch (const Error& e) {
      bad(w, e.problem());
    }
    s.arrays_.push_back(std::move(a));
    s.grids_.push_back(g);
  }
  ImageHeader& h = s.header_;
  h.geometry = s.grids_[0];
  h.pixel_type = s.arrays_[0].pixel_type;
  h.components = s.arrays_[0].components;
  h.dimensions = field_axes ? 4 : 3;
  h.volumes = 1;
  return s;
}

// -----------------------------------------------------------------------------------------------
// Chunks

namespace {

// One chunk's task in a plane range: which chunk, and its voxel box clipped to the array.
struct ChunkTask {
  index_t c0, c1;           // components covered
  index_t kc, kz, ky, kx;   // chunk indices
  Index3 lo, hi;            // voxel box of the chunk inside the array
};

// The most chunks one read or write handles: the task list and the per-task error slots cost
// about 100 bytes a chunk. A 4.4 Gvox field in 64^3 chunks has 50 000; millions mean chunks of a
// few voxels (a store that no tool should read chunk by chunk).
constexpr index_t kMaxChunksPerCall = index_t(1) << 22;

std::vector<ChunkTask> chunk_tasks(const ArrayInfo& a, index_t z0, index_t z1, const std::string& name) {
  std::vector<ChunkTask> tasks;
  const Index3 n = a.chunk_counts();
  const index_t nc = (a.components + a.component_chunk - 1) / a.component_chunk;
  const index_t rows = (z1 - 1) / a.chunk.z - z0 / a.chunk.z + 1;
  if (nc * rows > kMaxChunksPerCall / std::max<index_t>(1, n.x * n.y) || n.x * n.y > kMaxChunksPerCall)
    bad(name, "the planes asked for span more than " + std::to_string(kMaxChunksPerCall) +
                  " chunks of " + std::to_string(a.chunk.x) + "x" + std::to_string(a.chunk.y) + "x" +
                  std::to_string(a.chunk.z) + " voxels (chunks too small to read one by one)");
  tasks.reserve(std::size_t(nc * rows * n.x * n.y));
  for (index_t kc = 0; kc < nc; ++kc)
    for (index_t kz = z0 / a.chunk.z; kz * a.chunk.z < z1; ++kz)
      for (index_t ky = 0; ky < n.y; ++ky)
        for (index_t kx = 0; kx < n.x; ++kx) {
          ChunkTask t;
          t.kc = kc;
          t.kz = kz;
          t.ky = ky;
          t.kx = kx;
          t.c0 = kc * a.component_chunk;
          t.c1 = std::min<index_t>(t.c0 + a.component_chunk, a.components);
          t.lo = {kx * a.chunk.x, ky * a.chunk.y, kz * a.chunk.z};
          t.hi = {std::min(t.lo.x + a.chunk.x, a.size.x), std::min(t.lo.y + a.chunk.y, a.size.y),
                  std::min(t.lo.z + a.chunk.z, a.size.z)};
          tasks.push_back(t);
        }
  return tasks;
}

// f(T{}, task, file, where) for every chunk task, in parallel on all cores, T the level's pixel
// type; `file` is the chunk's path and `where` names it in errors.
template <class F>
void for_each_chunk(const ArrayInfo& a, int level, const std::vector<ChunkTask>& tasks,
                    const std::string& store_name, F&& f) {
  const std::string level_name = std::to_string(level) + "/";
  dispatch(a.pixel_type, [&](auto tag) {
    io_detail::parallel_for(tasks.size(), [&](std::size_t i) {
      const ChunkTask& t = tasks[i];
      const std::string file = a.chunk_path(t.kc, t.kz, t.ky, t.kx);
      f(tag, t, file, where_in(store_name, "chunk " + level_name + file.substr(a.path.size() + 1)));
    });
  });
}

void byteswap(unsigned char* p, std::size_t n, std::size_t width) {
  for (std::size_t i = 0; i + width <= n; i += width) std::reverse(p + i, p + i + width);
}

// Reads a chunk file whole; false when it does not exist.
bool read_chunk_file(const std::string& path, std::size_t limit, std::vector<unsigned char>& out,
                     const std::string& where) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    throw_error(ErrorKind::Io, where, std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    bad(where, "is not a regular file");
  }
  if (std::size_t(st.st_size) > limit) {
    ::close(fd);
    bad(where, "holds " + std::to_string(st.st_size) + " bytes, more than any encoding of the chunk");
  }
  out.resize(std::size_t(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(fd);
      throw_error(ErrorKind::Io, where, err ? std::string("reading failed: ") + std::strerror(err)
                                            : std::string("the file shrank while being read"));
    }
    got += std::size_t(n);
  }
  ::close(fd);
  return true;
}

}  // namespace

void Store::read_planes(int level, index_t z0, index_t nz, float* dst) const {
  if (level < 0 || level >= levels())
    throw_error(ErrorKind::InvalidArgument, name_, "no pyramid level " + std::to_string(level));
  const ArrayInfo& a = arrays_[std::size_t(level)];
  const Geometry& g = grids_[std::size_t(level)];
  if (nz < 1 || z0 < 0 || z0 + nz > a.size.z)
    throw_error(ErrorKind::InvalidArgument, name_,
                "planes [" + std::to_string(z0) + ", " + std::to_string(z0 + nz) +
                    ") are not a non-empty part of the store's " + std::to_string(a.size.z) + " planes");
  const index_t z1 = z0 + nz;
  const std::vector<ChunkTask> tasks = chunk_tasks(a, z0, z1, name_);
  const std::size_t chunk_bytes = a.chunk_bytes();
  const std::size_t limit = chunk_bytes + chunk_bytes / 8 + 65536;  // any codec's worst expansion
  const index_t plane = a.size.x * a.size.y;
  const index_t block = plane * nz;  // one component's planes in dst
  for_each_chunk(a, level, tasks, name_, [&](auto tag, const ChunkTask& t, const std::string& file,
                                              const std::string& where) {
  using T = decltype(tag);
    thread_local std::vector<unsigned char> stored, raw;
    const index_t zlo = std::max(t.lo.z, z0), zhi = std::min(t.hi.z, z1);
    if (!read_chunk_file(file, limit, stored, where)) {
      if (complete_)
        bad(where, "missing: gigareg writes every chunk of its stores (an incomplete copy?)");
      if (!a.has_fill)
        bad(where, "missing, and the array has no fill_value (null) to stand for it");
      const float v = float(a.fill);
      for (index_t c = t.c0; c < t.c1; ++c)
        for (index_t z = zlo; z < zhi; ++z)
          for (index_t y = t.lo.y; y < t.hi.y; ++y) {
            float* out = dst + c * block + (z - z0) * plane + y * a.size.x;
            std::fill(out + t.lo.x, out + t.hi.x, v);
          }
      return;
    }
    raw.resize(chunk_bytes);
    decode_chunk(a.codec, stored.data(), stored.size(), raw.data(), chunk_bytes, where);
    if (a.big_endian) byteswap(raw.data(), raw.size(), sizeof(T));
    const T* values = reinterpret_cast<const T*>(raw.data());
    for (index_t c = t.c0; c < t.c1; ++c)
      for (index_t z = zlo; z < zhi; ++z)
        for (index_t y = t.lo.y; y < t.hi.y; ++y) {
          const T* in = values + (((c - t.c0) * a.chunk.z + (z - t.lo.z)) * a.chunk.y + (y - t.lo.y)) * a.chunk.x;
          float* out = dst + c * block + (z - z0) * plane + y * a.size.x;
          for (index_t x = t.lo.x; x < t.hi.x; ++x) {
            T v;
            std::memcpy(&v, in + (x - t.lo.x), sizeof(T));
            if constexpr (std::is_integral_v<T>) {
              if (!io_detail::fits_float_exactly(v))
                io_detail::throw_inexact_integer(name_, g, z * plane + y * a.size.x + x, v);
            }
            out[x] = static_cast<float>(v);
          }
        }
  });
}

void Store::write_planes(int level, index_t z0, index_t nz, const float* src,
                         IntegerConversion conversion) const {
  if (level < 0 || level >= levels())
    throw_error(ErrorKind::InvalidArgument, name_, "no pyramid level " + std::to_string(level));
  if (v3_) throw_error(ErrorKind::InvalidArgument, name_, "gigareg writes Zarr v2 (NGFF 0.4) stores only");
  const ArrayInfo& a = arrays_[std::size_t(level)];
  const Geometry& g = grids_[std::size_t(level)];
  const index_t z1 = z0 + nz;
  if (nz < 1 || z0 < 0 || z1 > a.size.z || z0 % a.chunk.z != 0 || (z1 % a.chunk.z != 0 && z1 != a.size.z))
    throw_error(ErrorKind::InvalidArgument, name_,
                "planes [" + std::to_string(z0) + ", " + std::to_string(z1) +
                    ") are not whole chunks of " + std::to_string(a.chunk.z) + " planes of the store's " +
                    std::to_string(a.size.z) + " (a write covers chunks whole)");
  if (a.codec.kind != Codec::Kind::None && a.codec.kind != Codec::Kind::Blosc)
    throw_error(ErrorKind::InvalidArgument, name_, "gigareg writes blosc or uncompressed chunks only");
  const std::vector<ChunkTask> tasks = chunk_tasks(a, z0, z1, name_);
  // The directories of the chunks (level/[c/]z/y), made once here rather than raced for by the
  // threads; ranks writing other planes make their own z directories.
  if (a.separator == '/') {
    for (const ChunkTask& t : tasks) {
      if (t.kx != 0) continue;  // one row of chunks per directory
      std::string d = a.path;
      if (a.has_component_axis) make_directory(d = join(d, std::to_string(t.kc)), name_);
      make_directory(d = join(d, std::to_string(t.kz)), name_);
      make_directory(join(d, std::to_string(t.ky)), name_);
    }
  }
  const index_t plane = a.size.x * a.size.y;
  const index_t block = plane * nz;
  const std::size_t chunk_bytes = a.chunk_bytes();
  for_each_chunk(a, level, tasks, name_, [&](auto tag, const ChunkTask& t, const std::string& file,
                                              const std::string& where) {
  using T = decltype(tag);
    thread_local std::vector<unsigned char> raw, encoded;
    raw.assign(chunk_bytes, 0);  // the parts past the array's edge: zeros, the fill_value
    T* values = reinterpret_cast<T*>(raw.data());
    for (index_t c = t.c0; c < t.c1; ++c)
      for (index_t z = t.lo.z; z < t.hi.z; ++z)
        for (index_t y = t.lo.y; y < t.hi.y; ++y) {
          T* out = values + (((c - t.c0) * a.chunk.z + (z - t.lo.z)) * a.chunk.y + (y - t.lo.y)) * a.chunk.x;
          const float* in = src + c * block + (z - z0) * plane + y * a.size.x;
          for (index_t x = t.lo.x; x < t.hi.x; ++x) {
            if constexpr (std::is_floating_point_v<T>) {
              out[x - t.lo.x] = static_cast<T>(in[x]);
            } else {
              out[x - t.lo.x] = io_detail::to_integer<T>(in[x], conversion, g,
                                                          z * plane + y * a.size.x + x, name_);
            }
          }
        }
    encode_chunk(a.codec, raw.data(), raw.size(), sizeof(T), encoded, where);
    write_new_file(file, encoded.data(), encoded.size(), true, where);
  });
}

// -----------------------------------------------------------------------------------------------
// Pyramids and whole volumes

Volume<float> downsample(const Volume<float>& v, bool mode) {
  const Geometry& g0 = v.geometry();
  const Geometry g1 = level_geometry(g0, 1);
  Volume<float> out(g1, v.components(), MemorySpace::Host);
  const Index3 n0 = g0.size, n1 = g1.size;
  Index3 f{1, 1, 1};  // 2 along halved axes
  for (int a = 0; a < 3; ++a) f[a] = n1[a] < n0[a] ? 2 : 1;
  const index_t block0 = g0.voxel_count(), block1 = g1.voxel_count();
  for (int c = 0; c < v.components(); ++c) {
    const float* in = v.data() + c * block0;
    float* o = out.data() + c * block1;
#pragma omp parallel for schedule(static)
    for (index_t z = 0; z < n1.z; ++z) {
      float vals[8];
      for (index_t y = 0; y < n1.y; ++y)
        for (index_t x = 0; x < n1.x; ++x) {
          int count = 0;
          for (index_t dz = 0; dz < f.z; ++dz)
            for (index_t dy = 0; dy < f.y; ++dy)
              for (index_t dx = 0; dx < f.x; ++dx) {
                const index_t X = x * f.x + dx, Y = y * f.y + dy, Z = z * f.z + dz;
                if (X < n0.x && Y < n0.y && Z < n0.z) vals[count++] = in[(Z * n0.y + Y) * n0.x + X];
              }
          float r;
          if (mode) {
            for (int i = 1; i < count; ++i)  // insertion sort of at most 8 values
              for (int j = i; j > 0 && vals[j] < vals[j - 1]; --j) std::swap(vals[j], vals[j - 1]);
            r = vals[0];
            int best = 0;
            for (int i = 0; i < count;) {
              int j = i;
              while (j < count && vals[j] == vals[i]) ++j;
              if (j - i > best) {  // strictly more: ties keep the smaller value
                best = j - i;
                r = vals[i];
              }
              i = j;
            }
          } else {
            double s = 0;
            for (int i = 0; i < count; ++i) s += vals[i];
            r = float(s / count);
          }
          o[(z * n1.y + y) * n1.x + x] = r;
        }
    }
  }
  return out;
}

void write_volume(const std::string& path, const Volume<float>& volume, PixelType pixel_type,
                  IntegerConversion conversion, int levels, const std::string& downsampling) {
  if (volume.space() != MemorySpace::Host && levels > 1)
    throw_error(ErrorKind::Internal, path, "pyramids are made from host volumes");
  StoreSpec spec = StoreSpec::for_grid(volume.geometry(), volume.components(), pixel_type);
  spec.levels = levels;
  spec.downsampling = downsampling;
  io_detail::StagedFile staged(path);  // a temporary directory beside the final name
  create_store(staged.temp_path(), spec, path);
  const Store store = Store::open(staged.temp_path(), path);
  const Geometry& g = volume.geometry();
  if (volume.space() == MemorySpace::Host) {
    store.write_planes(0, 0, g.size.z, volume.data(), conversion);
  } else {
    // A device volume (a CUDA registration's output) goes to the host one row of chunks at a
    // time: the host never holds the whole volume.
    const index_t cz = store.array(0).chunk.z, plane = g.size.x * g.size.y, c = volume.components();
    std::vector<float> rows;
    for (index_t z0 = 0; z0 < g.size.z; z0 += cz) {
      const index_t nz = std::min(cz, g.size.z - z0);
      rows.resize(std::size_t(c * plane * nz));
      for (index_t k = 0; k < c; ++k)
        copy_bytes(rows.data() + k * plane * nz, MemorySpace::Host,
                   volume.data() + k * plane * g.size.z + z0 * plane, volume.space(),
                   std::size_t(plane * nz) * sizeof(float));
      store.write_planes(0, z0, nz, rows.data(), conversion);
    }
  }
  Volume<float> previous;
  for (int k = 1; k < levels; ++k) {
    Volume<float> next = downsample(k == 1 ? volume : previous, is_mode(downsampling));
    // Means of integers are not integers: levels above 0 round to the pixel type.
    store.write_planes(k, 0, next.geometry().size.z, next.data(), IntegerConversion::RoundAndClamp);
    previous = std::move(next);
  }
  staged.commit();
}

}  // namespace gigareg::zarr

namespace gigareg {

std::string describe_storage(const std::string& path) {
  if (!io_detail::is_zarr_path(path)) return "";
  const zarr::Store store = zarr::Store::open(path);
  const zarr::ArrayInfo& a = store.array(0);
  std::string levels;
  for (int k = 0; k < store.levels(); ++k) {
    const Index3 n = store.array(k).size;
    levels += (k ? ", " : "") + std::to_string(n.x) + "x" + std::to_string(n.y) + "x" + std::to_string(n.z);
  }
  return std::string(store.zarr_v3() ? "OME-Zarr (NGFF 0.5, Zarr v3): " : "OME-Zarr (NGFF 0.4, Zarr v2): ") +
         std::to_string(store.levels()) + " level(s) (" + levels +
         "), chunks " + std::to_string(a.chunk.x) + "x" + std::to_string(a.chunk.y) + "x" +
         std::to_string(a.chunk.z) + " voxels, " + a.codec.describe() +
         (store.complete() ? "" : ", written by another tool");
}

}  // namespace gigareg
