// Shared writes (write_sharded_image, write_sharded_displacement_field): every rank writes its own
// planes of one file, and the file is, byte for byte, the one a single process writes with
// write_image / write_displacement_field, for every P (docs/io.md, "Writing from several
// processes"). A failure on one rank is an error on every rank and leaves no file.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gigareg/distributed/partition.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "mpi_test.hpp"
#include "test_util.hpp"

namespace gigareg::dist {
namespace {

using test::agree;
using test::world;

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The bytes of a file, or of every file of a directory tree (a .zarr store) with its relative path.
std::string tree_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return bytes_of(path);
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), path).string());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const std::string& f : files) all += f + "\n" + bytes_of(path + "/" + f) + "\n";
  return all;
}

// The owned planes of `whole` as the rank holds them (a volume of that box).
Volume<float> owned_part(const Volume<float>& whole, const Box& owned) {
  Volume<float> v(whole.geometry(), owned, whole.components());
  const std::size_t plane = std::size_t(owned.size.x * owned.size.y);
  for (int c = 0; c < whole.components(); ++c)
    std::copy_n(whole.data() + std::size_t(c) * std::size_t(whole.voxel_count()) + std::size_t(owned.lo.z) * plane,
                std::size_t(owned.size.z) * plane, v.data() + std::size_t(c) * std::size_t(v.voxel_count()));
  return v;
}

std::string scratch_dir(const std::string& name) {
  const std::string dir = std::filesystem::temp_directory_path().string() + "/gigareg-dist-write-" + name;
  if (world().rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  world().barrier();
  return dir;
}

struct Case {
  const char* name;
  Index3 size;
  int components;
  PixelType type;
  const char* extension;
};

TEST(DistWrite, EveryRankWritesItsPlanesAndTheFileIsTheSingleProcessOne) {
  // Plane sizes around the gzip member grid: tiny planes (one member per component, built by rank
  // 0 from its neighbours' planes), members of 34 planes whose boundaries fall inside slabs, and
  // planes larger than a member (cut into pieces); every format the direct path writes, and NRRD
  // (gathered on rank 0).
  const Case cases[] = {
      {"u8_tiny", {37, 29, 23}, 1, PixelType::UInt8, ".nii.gz"},
      {"i16_members", {300, 200, 40}, 1, PixelType::Int16, ".nii.gz"},
      {"i16_plain", {300, 200, 40}, 1, PixelType::Int16, ".nii"},
      {"field_members", {160, 150, 45}, 3, PixelType::Float32, ".nii.gz"},
      {"field_plain", {160, 150, 45}, 3, PixelType::Float32, ".nii"},
      {"f32_big_planes", {1100, 1000, 4}, 1, PixelType::Float32, ".nii.gz"},
      {"f32_nrrd", {40, 30, 12}, 1, PixelType::Float32, ".nrrd"},
      // .zarr: chunks of 64 planes, so that slab boundaries fall inside chunk rows
      {"u16_zarr", {70, 66, 100}, 1, PixelType::UInt16, ".zarr"},
      {"field_zarr", {70, 66, 100}, 3, PixelType::Float32, ".zarr"},
  };
  const std::string dir = scratch_dir("cases");
  ShardPartition part(world());
  for (const Case& c : cases) {
    const Geometry g = gigareg::test::oblique_geometry(c.size);
    Volume<float> whole(g, c.components);
    // Values that compress somewhat, differently along the grid (members of different sizes).
    for (int k = 0; k < c.components; ++k)
      for (index_t i = 0; i < g.voxel_count(); ++i) {
        const std::uint32_t h = std::uint32_t(i) * 2654435761u;
        const float v = float((i / 7) % 200) + float(h >> 28) + 0.25f * float(k);
        whole.data()[std::size_t(k) * std::size_t(g.voxel_count()) + std::size_t(i)] =
            c.type == PixelType::Float32 ? v : std::round(v);
      }
    const std::string one = dir + "/" + c.name + "_one" + c.extension;
    const std::string shared = dir + "/" + c.name + "_shared" + c.extension;
    if (world().rank() == 0) {
      if (c.components == 3)
        write_displacement_field(one, whole);
      else
        write_image(one, whole, c.type);
    }
    const Volume<float> mine = owned_part(whole, part.owned(g.size));
    if (c.components == 3)
      write_sharded_displacement_field(shared, mine, part);
    else
      write_sharded_image(shared, mine, part, c.type);
    bool same = true;
    if (world().rank() == 0) same = tree_bytes(one) == tree_bytes(shared) && !tree_bytes(one).empty();
    EXPECT_ALL_RANKS(same) << c.name;
  }
  // Nothing but the outputs: no temporary left beside them.
  bool clean = true;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    clean = clean && e.path().filename().string()[0] != '.';
  EXPECT_ALL_RANKS(clean);
}

TEST(DistWrite, AFailureOnOneRankIsAnErrorEverywhereAndLeavesNoFile) {
  // The last plane holds a value that int16 cannot hold exactly: its conversion fails mid-write.
  const std::string dir = scratch_dir("failure");
  ShardPartition part(world());
  const Geometry g = gigareg::test::make_geometry({64, 48, 24});
  Volume<float> whole(g, 1);
  whole.fill(3.0f);
  whole.data()[whole.voxel_count() - 1] = 0.5f;
  const Volume<float> mine = owned_part(whole, part.owned(g.size));
  for (const char* ext : {".nii.gz", ".nii"}) {
    const std::string path = dir + "/labels" + ext;
    ErrorKind kind = ErrorKind::Internal;
    bool threw = false;
    try {
      write_sharded_image(path, mine, part, PixelType::Int16);
    } catch (const Error& e) {
      threw = true;
      kind = e.kind();
    }
    EXPECT_ALL_RANKS(threw) << ext;
    // The rank that converts the last plane (.nii: the last rank; .nii.gz: the one whose gzip
    // member holds it) reports its own cause, the others that a rank failed.
    EXPECT_ALL_RANKS(kind == ErrorKind::InvalidArgument || kind == ErrorKind::Io) << ext;
    std::int64_t causes = 0;
    for (std::int64_t n : part.gather_host_values({kind == ErrorKind::InvalidArgument ? 1 : 0})) causes += n;
    EXPECT_ALL_RANKS(causes == 1) << ext;
    world().barrier();
    EXPECT_ALL_RANKS(std::filesystem::is_empty(dir)) << ext;
  }
}

}  // namespace
}  // namespace gigareg::dist
