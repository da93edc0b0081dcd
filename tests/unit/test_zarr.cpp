// OME-Zarr stores (src/io/zarr.hpp, docs/zarr.md): exact round trips of every pixel type, label
// maps and displacement fields on oblique anisotropic grids, .nii <-> .zarr; z-range reads that
// touch only their chunks; the per-writer chunk API (several writers = one writer, byte for
// byte); bytes independent of the thread count; pyramids; Python's zarr package reading gigareg's
// stores; and bad stores, each a clear error naming the store and the problem.
#include <gtest/gtest.h>
#include <omp.h>
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gigareg/io.hpp"
#include "io/zarr.hpp"
#include "io_test_util.hpp"

namespace gigareg {
namespace {

namespace fs = std::filesystem;
using testing::oblique_geometry;
using testing::random_volume;
using testing::read_bytes;
using testing::same_geometry;
using testing::same_voxels;
using testing::ScratchDir;
using testing::throws_error;
using testing::write_bytes;

// Small chunks, so that the test volumes have many chunks, partial ones at every edge.
class Zarr : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = zarr_options();
    ZarrOptions o;
    o.chunk = {8, 8, 4};
    set_zarr_options(o);
  }
  void TearDown() override { set_zarr_options(saved_); }
  ZarrOptions saved_;
};

const Index3 kSize{19, 13, 11};

// Every file of a store: relative name -> bytes.
std::map<std::string, std::string> store_files(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_bytes(e.path().string());
  return files;
}

nlohmann::json load_json(const std::string& path) { return nlohmann::json::parse(read_bytes(path)); }
void save_json(const std::string& path, const nlohmann::json& j) { write_bytes(path, j.dump(2)); }

// ---------------------------------------------------------------------------------------------
// Round trips

TEST_F(Zarr, ImagesOfEveryPixelTypeRoundTripExactly) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const struct {
    PixelType type;
    double lo, hi;
    bool integers;
  } cases[] = {{PixelType::UInt8, 0, 255, true},          {PixelType::Int8, -128, 127, true},
               {PixelType::Int16, -32768, 32767, true},    {PixelType::UInt16, 0, 65535, true},
               {PixelType::Int32, -(1 << 24), 1 << 24, true}, {PixelType::UInt32, 0, 1 << 24, true},
               {PixelType::Float32, -1e4, 1e4, false},     {PixelType::Float64, -1, 1, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(to_string(c.type));
    const Volume<float> v = random_volume(g, 1, c.lo, c.hi, c.integers);
    const std::string path = dir.file(std::string(to_string(c.type)) + ".zarr");
    write_image(path, v, c.type);
    const Image back = read_image(path);
    EXPECT_EQ(back.pixel_type, c.type);
    EXPECT_TRUE(same_geometry(back.voxels.geometry(), g));  // exactly
    EXPECT_TRUE(same_voxels(back.voxels, v));
    const ImageHeader h = read_image_header(path);
    EXPECT_EQ(h.components, 1);
    EXPECT_TRUE(same_geometry(h.geometry, g));
  }
}

TEST_F(Zarr, NiftiToZarrAndBackKeepsTheFileBytes) {
  // .nii -> .zarr -> .nii gives the same file as .nii -> .nii: same header (ITK's, from the same
  // geometry and type: the .zarr kept the geometry ITK read to the bit), same data bytes. Label
  // maps, images and a field.
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const Volume<float> labels = random_volume(g, 1, 0, 40, true, 3);
  const Volume<float> image = random_volume(g, 1, -300, 3000, true, 4);
  const Volume<float> field = random_volume(g, 3, -5, 5, false, 5);
  write_image(dir.file("labels.nii.gz"), labels, PixelType::Int32);
  write_image(dir.file("image.nii"), image, PixelType::Int16);
  write_displacement_field(dir.file("warp.nii.gz"), field);
  for (const std::string name : {"labels.nii.gz", "image.nii", "warp.nii.gz"}) {
    SCOPED_TRACE(name);
    convert_image_file(dir.file(name), dir.file("z_" + name + ".zarr"));
    convert_image_file(dir.file("z_" + name + ".zarr"), dir.file("back_" + name));
    convert_image_file(dir.file(name), dir.file("direct_" + name));
    // .nii.gz too: the same gzip members, so even the compressed bytes are equal.
    EXPECT_EQ(read_bytes(dir.file("back_" + name)), read_bytes(dir.file("direct_" + name)));
    EXPECT_TRUE(same_geometry(read_image_header(dir.file("z_" + name + ".zarr")).geometry,
                              read_image_header(dir.file(name)).geometry));
  }
  const DisplacementField u = read_displacement_field(dir.file("z_warp.nii.gz.zarr"));
  EXPECT_TRUE(same_voxels(u, field));
  EXPECT_EQ(read_image(dir.file("z_labels.nii.gz.zarr")).pixel_type, PixelType::Int32);
  // The field's array: (c, z, y, x), one component per chunk, float32.
  const nlohmann::json za = load_json(dir.file("z_warp.nii.gz.zarr/0/.zarray"));
  EXPECT_EQ(za["shape"], nlohmann::json({3, kSize.z, kSize.y, kSize.x}));
  EXPECT_EQ(za["chunks"], nlohmann::json({1, 4, 8, 8}));
  EXPECT_EQ(za["dtype"], "<f4");
  const nlohmann::json attrs = load_json(dir.file("z_warp.nii.gz.zarr/.zattrs"));
  EXPECT_EQ(attrs["multiscales"][0]["axes"][0]["type"], "channel");
  EXPECT_EQ(attrs["gigareg"]["kind"], "displacement_field");
}

TEST_F(Zarr, IdentityDirectionTranslationIsTheOrigin) {
  ScratchDir dir;
  Geometry g;
  g.size = {9, 7, 5};
  g.spacing = {0.5, 0.75, 3.0};
  g.origin = {-12.25, 40.5, 7.0};
  write_image(dir.file("a.zarr"), random_volume(g, 1, 0, 10, true), PixelType::UInt8);
  const nlohmann::json t = load_json(dir.file("a.zarr/.zattrs"))["multiscales"][0]["datasets"][0]
                                    ["coordinateTransformations"];
  EXPECT_EQ(t[0]["scale"], nlohmann::json({3.0, 0.75, 0.5}));           // z, y, x
  EXPECT_EQ(t[1]["translation"], nlohmann::json({7.0, 40.5, -12.25}));  // z, y, x
}

// ---------------------------------------------------------------------------------------------
// z-ranges

TEST_F(Zarr, SlabReadsEqualTheWholeImageAndTouchOnlyTheirChunks) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const Volume<float> v = random_volume(g, 1, 0, 1000, true);
  const std::string path = dir.file("s.zarr");
  write_image(path, v, PixelType::UInt16);
  const index_t plane = kSize.x * kSize.y;
  for (const auto& [z0, nz] : std::vector<std::pair<index_t, index_t>>{{0, 11}, {0, 1}, {3, 5}, {4, 4}, {10, 1}, {7, 4}}) {
    const Image slab = read_image_slab(path, z0, nz);
    ASSERT_EQ(slab.voxels.box().lo.z, z0);
    ASSERT_EQ(slab.voxels.box().size.z, nz);
    for (index_t i = 0; i < nz * plane; ++i)
      ASSERT_EQ(slab.voxels.data()[i], v.data()[z0 * plane + i]) << "slab " << z0 << "+" << nz;
  }
  // Planes 4..7 are chunk row 1 (chunks of 4 planes): without rows 0 and 2 the slab still reads,
  // and the whole image names a missing chunk.
  fs::remove_all(path + "/0/0");
  fs::remove_all(path + "/0/2");
  EXPECT_NO_THROW(read_image_slab(path, 4, 4));
  EXPECT_TRUE(throws_error([&] { read_image(path); }, ErrorKind::InvalidInput, path, "chunk 0/0/0/0): missing"));
}

TEST_F(Zarr, SeveralWritersOfChunkRangesMakeTheSameStoreAsOne) {
  // What the ranks of a distributed run do: one creates the metadata, each writes the chunk rows
  // that start in its slab (planes of its successor included), in any order.
  ScratchDir dir;
  const Geometry g = oblique_geometry({21, 10, 23});
  const Volume<float> field = random_volume(g, 3, -3, 3, false);
  const std::string one = dir.file("one.zarr");
  write_displacement_field(one, field);

  const std::string many = dir.file("many.zarr");
  zarr::create_store(many, zarr::StoreSpec::for_grid(g, 3, PixelType::Float32));
  const zarr::Store store = zarr::Store::open(many);
  const index_t nz = g.size.z, plane = g.size.x * g.size.y, cz = store.array(0).chunk.z;
  const int ranks = 3;
  for (int r = ranks - 1; r >= 0; --r) {
    const index_t a = nz * r / ranks, b = nz * (r + 1) / ranks;  // the rank's slab
    const index_t z0 = zarr::chunk_boundary(a, cz, nz), z1 = zarr::chunk_boundary(b, cz, nz);
    if (z1 <= z0) continue;
    std::vector<float> slab(std::size_t(3 * plane * (z1 - z0)));
    for (int c = 0; c < 3; ++c)
      std::copy(field.data() + c * plane * nz + z0 * plane, field.data() + c * plane * nz + z1 * plane,
                slab.data() + c * plane * (z1 - z0));
    store.write_planes(0, z0, z1 - z0, slab.data());
  }
  EXPECT_EQ(store_files(many), store_files(one));
  // A chunk is written once; ranges cover whole chunks.
  std::vector<float> planes(std::size_t(3 * plane * cz), 0.0f);
  EXPECT_TRUE(throws_error([&] { store.write_planes(0, 0, cz, planes.data()); }, ErrorKind::Io, many,
                           "already exists"));
  EXPECT_TRUE(throws_error([&] { store.write_planes(0, 1, cz, planes.data()); }, ErrorKind::InvalidArgument,
                           many, "not whole chunks"));
}

TEST_F(Zarr, BytesDoNotDependOnTheThreadCount) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const Volume<float> v = random_volume(g, 1, -1000, 1000, false);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  write_image(dir.file("t1.zarr"), v);
  omp_set_num_threads(std::max(4, threads));
  write_image(dir.file("tn.zarr"), v);
  omp_set_num_threads(threads);
  EXPECT_EQ(store_files(dir.file("t1.zarr")), store_files(dir.file("tn.zarr")));
}

TEST_F(Zarr, CodecsAndChunkOptions) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const Volume<float> v = random_volume(g, 1, 0, 100, true);
  for (const char* codec : {"lz4", "none", "zstd"}) {
    ZarrOptions o = zarr_options();
    o.codec = codec;
    o.chunk = parse_zarr_chunk("5x6x7");
    set_zarr_options(o);
    const std::string path = dir.file(std::string(codec) + ".zarr");
    write_image(path, v, PixelType::Int16);
    EXPECT_TRUE(same_voxels(read_image(path).voxels, v)) << codec;
    EXPECT_EQ(load_json(path + "/0/.zarray")["chunks"], nlohmann::json({7, 6, 5}));
  }
  EXPECT_TRUE(parse_zarr_chunk("32") == (Index3{32, 32, 32}));
  EXPECT_THROW(parse_zarr_chunk("0"), Error);
  EXPECT_THROW(set_zarr_options(ZarrOptions{{0, 64, 64}, "zstd", 1}), Error);
  EXPECT_THROW(parse_zarr_chunk("8x8"), Error);
  EXPECT_THROW(parse_zarr_chunk("-8"), Error);
  EXPECT_THROW(set_zarr_options(ZarrOptions{{64, 64, 64}, "snappy", 1}), Error);
}

TEST_F(Zarr, ExistingStoreIsReplacedWholeAndOtherDirectoriesAreNot) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const std::string path = dir.file("o.zarr");
  write_image(path, random_volume(g, 1, 0, 9, true, 1), PixelType::UInt8);
  const Volume<float> second = random_volume(oblique_geometry({5, 6, 7}), 1, 0, 9, true, 2);
  write_image(path, second, PixelType::UInt8);
  EXPECT_TRUE(same_voxels(read_image(path).voxels, second));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"o.zarr"});  // no temporaries, no old store
  fs::create_directory(dir.file("data.zarr"));
  write_bytes(dir.file("data.zarr/precious.txt"), "x");
  EXPECT_TRUE(throws_error([&] { write_image(dir.file("data.zarr"), second); }, ErrorKind::Io,
                           dir.file("data.zarr"), "holds no Zarr store"));
  EXPECT_EQ(read_bytes(dir.file("data.zarr/precious.txt")), "x");
}

// ---------------------------------------------------------------------------------------------
// Pyramids

TEST_F(Zarr, PyramidLevelsAreMeansOrModesOfTwoCubedBlocks) {
  ScratchDir dir;
  Geometry g = oblique_geometry({5, 4, 3});
  Volume<float> v(g, 1);
  for (index_t i = 0; i < v.voxel_count(); ++i) v.data()[i] = float(i % 7);
  write_image(dir.file("v.nii"), v, PixelType::UInt8);
  ConvertOptions mean;
  mean.pyramid = 2;
  convert_image_file(dir.file("v.nii"), dir.file("mean.zarr"), mean);
  ConvertOptions mode = mean;
  mode.labels = true;
  convert_image_file(dir.file("v.nii"), dir.file("mode.zarr"), mode);
  const zarr::Store sm = zarr::Store::open(dir.file("mean.zarr"));
  const zarr::Store so = zarr::Store::open(dir.file("mode.zarr"));
  ASSERT_EQ(sm.levels(), 3);
  g = read_image_header(dir.file("v.nii")).geometry;  // NIfTI's float origin and quaternion
  const Geometry g1 = zarr::level_geometry(g, 1);
  EXPECT_TRUE(g1.size == (Index3{3, 2, 2}));
  EXPECT_TRUE(same_geometry(sm.geometry(1), g1, 1e-9));
  // Voxel (0,0,0) of level 1 sits at the centre of level 0's voxels 0..1 on each axis.
  const Vec3d c = g.index_to_physical({0.5, 0.5, 0.5});
  for (int a = 0; a < 3; ++a) EXPECT_NEAR(g1.origin[a], c[a], 1e-9);
  EXPECT_TRUE(zarr::level_geometry(g, 2).size == (Index3{2, 1, 1}));
  std::vector<float> m(12), o(12);
  sm.read_planes(1, 0, 2, m.data());
  so.read_planes(1, 0, 2, o.data());
  // Reference: block (1, 1, 0) of level 1 covers x 2..3, y 2..3, z 0..1.
  double sum = 0;
  std::map<int, int> count;
  for (int z = 0; z < 2; ++z)
    for (int y = 2; y < 4; ++y)
      for (int x = 2; x < 4; ++x) {
        const float val = v(x, y, z);
        sum += val;
        ++count[int(val)];
      }
  int best = -1, best_n = 0;
  for (auto [val, n] : count)
    if (n > best_n) best = val, best_n = n;
  const index_t at = 0 * 6 + 1 * 3 + 1;  // (x 1, y 1, z 0) of 3x2x2
  EXPECT_EQ(m[std::size_t(at)], std::round(sum / 8));  // uint8 level: the mean rounded
  EXPECT_EQ(o[std::size_t(at)], float(best));
  // The odd edge: block (2, 0, 0) covers x 4 only (2 x 2 x 1 voxels... z 0..1, y 0..1).
  double edge = 0;
  for (int z = 0; z < 2; ++z)
    for (int y = 0; y < 2; ++y) edge += v(4, y, z);
  EXPECT_EQ(m[2], std::round(edge / 4));
  EXPECT_TRUE(throws_error([&] { convert_image_file(dir.file("v.nii"), dir.file("p.nii.gz"), mean); },
                           ErrorKind::InvalidArgument, dir.file("p.nii.gz"), "only a .zarr"));
}

// ---------------------------------------------------------------------------------------------
// Python's zarr package reads what gigareg writes

TEST_F(Zarr, PythonZarrReadsTheStores) {
  if (std::system((std::string(GIGAREG_ZARR_CHECK_PYTHON) + " -c 'import zarr, numpy' > /dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << GIGAREG_ZARR_CHECK_PYTHON << " cannot import zarr (Debian: python3-zarr): not checked";
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  struct Case {
    std::string name;
    PixelType type;
    int components;
    Volume<float> v;
  };
  std::vector<Case> cases;
  cases.push_back({"u8", PixelType::UInt8, 1, random_volume(g, 1, 0, 255, true, 1)});
  cases.push_back({"i16", PixelType::Int16, 1, random_volume(g, 1, -32768, 32767, true, 2)});
  cases.push_back({"i32", PixelType::Int32, 1, random_volume(g, 1, -(1 << 24), 1 << 24, true, 3)});
  cases.push_back({"f32", PixelType::Float32, 1, random_volume(g, 1, -5, 5, false, 4)});
  cases.push_back({"field", PixelType::Float32, 3, random_volume(g, 3, -5, 5, false, 5)});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string store = dir.file(c.name + ".zarr");
    if (c.components == 3)
      write_displacement_field(dir.file(c.name + ".nii"), c.v);
    else
      write_image(dir.file(c.name + ".nii"), c.v, c.type);
    convert_image_file(dir.file(c.name + ".nii"), store, ConvertOptions{1, false});  // 2 levels
    nlohmann::json exp;
    const std::map<PixelType, std::string> dtypes = {{PixelType::UInt8, "|u1"}, {PixelType::Int16, "<i2"},
                                                     {PixelType::Int32, "<i4"}, {PixelType::Float32, "<f4"}};
    exp["dtype"] = dtypes.at(c.type);
    exp["shape"] = c.components == 3 ? nlohmann::json({3, kSize.z, kSize.y, kSize.x})
                                     : nlohmann::json({kSize.z, kSize.y, kSize.x});
    const Geometry gs = read_image_header(dir.file(c.name + ".nii")).geometry;  // NIfTI's rounding
    exp["spacing"] = {gs.spacing.x, gs.spacing.y, gs.spacing.z};
    exp["origin"] = {gs.origin.x, gs.origin.y, gs.origin.z};
    exp["direction"] = nlohmann::json::array();
    for (int r = 0; r < 3; ++r) exp["direction"].push_back({gs.direction(r, 0), gs.direction(r, 1), gs.direction(r, 2)});
    exp["kind"] = c.components == 3 ? "displacement_field" : "image";
    exp["levels"] = 2;
    save_json(dir.file(c.name + ".json"), exp);
    write_bytes(dir.file(c.name + ".raw"),
                std::string(reinterpret_cast<const char*>(c.v.data()), std::size_t(c.v.bytes())));
    const std::string cmd = std::string(GIGAREG_ZARR_CHECK_PYTHON) + " '" + GIGAREG_SOURCE_DIR "/tests/zarr/check_zarr.py' '" +
                            store + "' '" + dir.file(c.name + ".json") + "' '" + dir.file(c.name + ".raw") + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

// ---------------------------------------------------------------------------------------------
// Zarr v3 / NGFF 0.5 (read only)

// A Zarr v3 / NGFF 0.5 copy of gigareg's v2 store `from` (one level): zarr.json files, chunks
// under "c/", the same Blosc frames ("blosc") or the chunks recompressed with zstd ("zstd").
void make_v3_copy(const std::string& from, const std::string& to, const std::string& codec) {
  fs::create_directories(to + "/0");
  nlohmann::json attrs = load_json(from + "/.zattrs");
  nlohmann::json ms = attrs["multiscales"];
  ms[0].erase("version");
  nlohmann::json group = {{"zarr_format", 3}, {"node_type", "group"},
                          {"attributes", {{"ome", {{"version", "0.5"}, {"multiscales", ms}}},
                                          {"gigareg", attrs["gigareg"]}}}};
  save_json(to + "/zarr.json", group);
  const nlohmann::json za = load_json(from + "/0/.zarray");
  const zarr::Store v2 = zarr::Store::open(from);
  const zarr::ArrayInfo& info = v2.array(0);
  const std::map<std::string, std::string> types = {{"|u1", "uint8"}, {"<i2", "int16"}, {"<f4", "float32"}};
  nlohmann::json bytes_codec = {{"name", "bytes"}, {"configuration", {{"endian", "little"}}}};
  nlohmann::json compressor =
      codec == "blosc"
          ? nlohmann::json{{"name", "blosc"},
                           {"configuration", {{"cname", "zstd"}, {"clevel", 1}, {"shuffle", "shuffle"},
                                              {"typesize", size_of(info.pixel_type)}, {"blocksize", 0}}}}
          : nlohmann::json{{"name", "zstd"}, {"configuration", {{"level", 3}, {"checksum", false}}}};
  nlohmann::json array = {
      {"zarr_format", 3}, {"node_type", "array"}, {"shape", za["shape"]}, {"data_type", types.at(za["dtype"])},
      {"chunk_grid", {{"name", "regular"}, {"configuration", {{"chunk_shape", za["chunks"]}}}}},
      {"chunk_key_encoding", {{"name", "default"}, {"configuration", {{"separator", "/"}}}}},
      {"fill_value", 0}, {"codecs", {bytes_codec, compressor}}, {"dimension_names", {"z", "y", "x"}}};
  save_json(to + "/0/zarr.json", array);
  std::vector<unsigned char> raw(info.chunk_bytes());
  for (const auto& e : fs::recursive_directory_iterator(from + "/0")) {
    if (!e.is_regular_file() || e.path().filename() == ".zarray") continue;
    const fs::path target = fs::path(to) / "0" / "c" / fs::relative(e.path(), from + "/0");
    fs::create_directories(target.parent_path());
    std::string chunk = read_bytes(e.path().string());
    if (codec == "zstd") {
      zarr::decode_chunk(info.codec, reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size(),
                         raw.data(), raw.size(), "test");
      std::string z(ZSTD_compressBound(raw.size()), '\0');
      z.resize(ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 3));
      chunk = z;
    }
    write_bytes(target.string(), chunk);
  }
}

TEST_F(Zarr, ZarrV3NgffStoresAreRead) {
  ScratchDir dir;
  const Geometry g = oblique_geometry(kSize);
  const Volume<float> v = random_volume(g, 1, -3000, 3000, true);
  write_image(dir.file("v2.zarr"), v, PixelType::Int16);
  for (const std::string codec : {"blosc", "zstd"}) {
    SCOPED_TRACE(codec);
    const std::string v3 = dir.file(codec + "_v3.zarr");
    make_v3_copy(dir.file("v2.zarr"), v3, codec);
    const Image back = read_image(v3);
    EXPECT_EQ(back.pixel_type, PixelType::Int16);
    EXPECT_TRUE(same_geometry(back.voxels.geometry(), g));
    EXPECT_TRUE(same_voxels(back.voxels, v));
    const Image slab = read_image_slab(v3, 5, 3);
    EXPECT_EQ(slab.voxels(3, 4, 6), v(3, 4, 6));
    EXPECT_NE(describe_storage(v3).find("NGFF 0.5, Zarr v3"), std::string::npos) << describe_storage(v3);
  }
  // Read only: a v3 store is converted to v2 by gigareg convert.
  convert_image_file(dir.file("zstd_v3.zarr"), dir.file("again.zarr"));
  EXPECT_TRUE(same_voxels(read_image(dir.file("again.zarr")).voxels, v));
  EXPECT_TRUE(throws_error([&] { zarr::Store::open(dir.file("zstd_v3.zarr")).write_planes(0, 0, 4, v.data()); },
                           ErrorKind::InvalidArgument, dir.file("zstd_v3.zarr"), "writes Zarr v2"));
}

// ---------------------------------------------------------------------------------------------
// Bad stores: each a clear error naming the store and the problem; nothing left behind

class ZarrBadInput : public Zarr {
 protected:
  void SetUp() override {
    Zarr::SetUp();
    store = dir.file("bad.zarr");
    write_image(store, random_volume(oblique_geometry(kSize), 1, 0, 100, true), PixelType::Int16);
  }
  void edit_zarray(const std::function<void(nlohmann::json&)>& f, const std::string& level = "0") {
    nlohmann::json j = load_json(store + "/" + level + "/.zarray");
    f(j);
    save_json(store + "/" + level + "/.zarray", j);
  }
  void edit_zattrs(const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = load_json(store + "/.zattrs");
    f(j);
    save_json(store + "/.zattrs", j);
  }
  ::testing::AssertionResult fails(ErrorKind kind, const std::string& needle) {
    return throws_error([&] { read_image(store); }, kind, store, needle);
  }
  ScratchDir dir;
  std::string store;
};

TEST_F(ZarrBadInput, MissingChunkOfGigaregsOwnStore) {
  fs::remove(store + "/0/1/0/1");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "chunk 0/1/0/1): missing: gigareg writes every chunk"));
}

TEST_F(ZarrBadInput, MissingChunkOfAnotherToolsStoreIsTheFillValue) {
  edit_zattrs([](nlohmann::json& j) { j["gigareg"].erase("complete"); });
  fs::remove(store + "/0/1/0/1");
  edit_zarray([](nlohmann::json& j) { j["fill_value"] = 7; });
  const Image image = read_image(store);
  EXPECT_EQ(image.voxels(8, 0, 4), 7.0f);   // inside chunk (z 1, y 0, x 1)
  EXPECT_NE(image.voxels(0, 0, 0), 7.0f - 1e9f);
  edit_zarray([](nlohmann::json& j) { j["fill_value"] = nullptr; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "missing, and the array has no fill_value"));
}

TEST_F(ZarrBadInput, CorruptAndTruncatedChunks) {
  const std::string chunk = store + "/0/1/1/1";
  std::string bytes = read_bytes(chunk);
  write_bytes(chunk, bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "chunk 0/1/1/1"));
  std::string garbled = bytes;
  for (std::size_t i = 16; i < garbled.size(); ++i) garbled[i] = char(garbled[i] ^ 0x5a);
  write_bytes(chunk, garbled);
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "chunk 0/1/1/1"));
  write_bytes(chunk, "");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "chunk 0/1/1/1"));
}

TEST_F(ZarrBadInput, UnknownCodecAndUnsupportedArrays) {
  edit_zarray([](nlohmann::json& j) { j["compressor"] = {{"id", "lzma"}}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "unknown compressor 'lzma'"));
  edit_zarray([](nlohmann::json& j) { j["compressor"] = {{"id", "blosc"}, {"cname", "nosuch"}}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "blosc codec 'nosuch' is not available"));
  edit_zarray([](nlohmann::json& j) { j["compressor"] = {{"id", "blosc"}, {"cname", "zstd"}, {"clevel", 1}}; });
  edit_zarray([](nlohmann::json& j) { j["dtype"] = "<c8"; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "unsupported dtype '<c8'"));
  edit_zarray([](nlohmann::json& j) { j["dtype"] = "<i2"; j["order"] = "F"; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "is not read (gigareg reads C-ordered arrays)"));
}

TEST_F(ZarrBadInput, InconsistentShapesAndTypes) {
  // A dtype that does not match the chunks' bytes: the chunk decodes to the wrong size.
  edit_zarray([](nlohmann::json& j) { j["dtype"] = "<i4"; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "decodes to"));
  edit_zarray([](nlohmann::json& j) { j["dtype"] = "<i2"; j["chunks"] = {4, 8}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "does not match 'shape'"));
  edit_zarray([](nlohmann::json& j) { j["chunks"] = {4, 8, 8}; j["shape"] = {3, 11, 13, 19}; j["chunks"] = {1, 4, 8, 8}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "multiscales axes are 3"));
  edit_zarray([](nlohmann::json& j) { j["shape"] = {11, 13, 19}; j["chunks"] = {4, 8, 8}; });
  edit_zattrs([](nlohmann::json& j) { j["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = {1, 2}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "'scale' must list one number per axis"));
}

TEST_F(ZarrBadInput, MissingOrMalformedMetadata) {
  write_bytes(store + "/.zattrs", "{\"multiscales\": [");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, ".zattrs): malformed JSON"));
  fs::remove(store + "/.zattrs");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, ".zattrs): missing"));
  write_bytes(store + "/.zattrs", "{\"something\": 1}");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "has no OME-NGFF 'multiscales' list"));
  fs::remove(store + "/0/.zarray");
  write_bytes(store + "/.zattrs", "{}");
  EXPECT_TRUE(throws_error([&] { read_image_header(store); }, ErrorKind::InvalidInput, store, "multiscales"));
  fs::remove(store + "/.zgroup");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, ".zgroup): missing"));
  EXPECT_TRUE(throws_error([&] { read_image(dir.file("none.zarr")); }, ErrorKind::Io, dir.file("none.zarr"),
                           "does not exist"));
}

TEST_F(ZarrBadInput, MissingArrayMetadataAndMovedOrigin) {
  fs::remove(store + "/0/.zarray");
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "0/.zarray): missing"));
  ZarrBadInput::SetUp();  // a fresh store (the old one is replaced)
  edit_zattrs([](nlohmann::json& j) { j["gigareg"]["origin"][0] = 1000.0; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "translation disagrees with the origin"));
  edit_zattrs([](nlohmann::json& j) { j["gigareg"]["direction"] = {{1, 0, 0}, {1, 0, 0}, {0, 0, 1}}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "'direction' is singular"));
}

TEST_F(ZarrBadInput, AbsurdSizes) {
  edit_zarray([](nlohmann::json& j) { j["shape"] = {10000, 10000, 10000}; });
  EXPECT_TRUE(fails(ErrorKind::OutOfMemory, ""));  // 1e12 voxels: refused before any allocation
  edit_zarray([](nlohmann::json& j) { j["shape"] = {2147483648LL, 2147483648LL, 2147483648LL}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "overflows"));
  edit_zarray([](nlohmann::json& j) { j["shape"] = {11, 13, 19}; j["chunks"] = {0, 8, 8}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "every chunks entry must be an integer in 1"));
  edit_zarray([](nlohmann::json& j) { j["chunks"] = {-4, 8, 8}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "every chunks entry"));
  edit_zarray([](nlohmann::json& j) { j["shape"] = {4096, 4096, 4096}; j["chunks"] = {1, 1, 1}; });
  EXPECT_TRUE(throws_error([&] { zarr::Store::open(store).read_planes(0, 0, 1, nullptr); }, ErrorKind::InvalidInput,
                           store, "chunks too small"));
  edit_zarray([](nlohmann::json& j) { j["shape"] = {11, 13, 19}; j["chunks"] = {4096, 4096, 4096}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "larger than the 1 GiB"));
  edit_zarray([](nlohmann::json& j) { j["chunks"] = {4, 8, 8}; j["shape"] = {11, 13, "19"}; });
  EXPECT_TRUE(fails(ErrorKind::InvalidInput, "every shape entry"));
}

TEST_F(ZarrBadInput, ZarrV3WithoutNgffOrShardedAndBareArraysAreNamed) {
  const std::string v3 = dir.file("v3.zarr");
  fs::create_directory(v3);
  write_bytes(v3 + "/zarr.json", "{\"zarr_format\": 3, \"node_type\": \"group\"}");
  EXPECT_TRUE(throws_error([&] { read_image(v3); }, ErrorKind::InvalidInput, v3, "has no OME-NGFF 'ome'"));
  const std::string sharded = dir.file("sharded.zarr");
  make_v3_copy(store, sharded, "blosc");
  nlohmann::json a = load_json(sharded + "/0/zarr.json");
  a["codecs"] = nlohmann::json::parse(R"([{"name": "sharding_indexed", "configuration": {}}])");
  save_json(sharded + "/0/zarr.json", a);
  EXPECT_TRUE(throws_error([&] { read_image(sharded); }, ErrorKind::InvalidInput, sharded,
                           "sharded arrays are not read yet"));
  const std::string bare = dir.file("bare.zarr");
  fs::create_directory(bare);
  fs::copy_file(store + "/0/.zarray", bare + "/.zarray");
  EXPECT_TRUE(throws_error([&] { read_image(bare); }, ErrorKind::InvalidInput, bare, "bare Zarr array"));
}

TEST_F(ZarrBadInput, FailedWritesLeaveNothing) {
  const Volume<float> halves = random_volume(oblique_geometry(kSize), 1, 0, 1, false);
  const std::string out = dir.file("out.zarr");
  EXPECT_TRUE(throws_error([&] { write_image(out, halves, PixelType::UInt8); }, ErrorKind::InvalidArgument, out,
                           "not an integer"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"bad.zarr"});
  // In a set: the store is not renamed until commit, and is removed if the set fails.
  {
    OutputSet set;
    write_image(out, halves);
    EXPECT_FALSE(fs::exists(out));
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"bad.zarr"});
  {
    OutputSet set;
    write_image(out, halves);
    set.commit();
  }
  EXPECT_TRUE(same_voxels(read_image(out).voxels, halves));
}

}  // namespace
}  // namespace gigareg
