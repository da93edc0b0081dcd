// Volume ownership and views, memory spaces, the error type and the log hook.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/volume.hpp"

using namespace gigareg;

namespace {
Geometry small_grid() {
  Geometry g;
  g.size = {5, 4, 3};
  g.spacing = {1.0, 2.0, 3.0};
  return g;
}
}  // namespace

TEST(Volume, LayoutIsXFastestWithComponentPlanes) {
  Volume<float> v(small_grid(), 3);
  EXPECT_EQ(v.voxel_count(), 60);
  EXPECT_EQ(v.element_count(), 180);
  EXPECT_EQ(v.bytes(), 180 * sizeof(float));
  auto view = v.view();
  EXPECT_EQ(view.stride.x, 1);
  EXPECT_EQ(view.stride.y, 5);
  EXPECT_EQ(view.stride.z, 20);
  EXPECT_EQ(view.component_stride, 60);
  v(2, 3, 1, 2) = 7.0f;
  EXPECT_EQ(v.data()[2 * 60 + 1 * 20 + 3 * 5 + 2], 7.0f);
}

TEST(Volume, BoxViewAddressesByGlobalIndex) {
  const Geometry g = small_grid();
  const Box slab{{0, 0, 1}, {5, 4, 2}};
  Volume<float> v(g, slab, 1);
  EXPECT_EQ(v.voxel_count(), 40);
  v.fill(0.0f);
  v(4, 3, 2) = 3.0f;  // global index inside the slab
  EXPECT_EQ(v.data()[1 * 20 + 3 * 5 + 4], 3.0f);
  EXPECT_TRUE(v.view().box() == slab);
  EXPECT_EQ(v.view().global_size, g.size);
  EXPECT_THROW(Volume<float>(g, Box{{0, 0, 2}, {5, 4, 2}}, 1), Error);  // leaves the grid
}

TEST(Volume, CloneIsDeepAndMoveTransfersOwnership) {
  Volume<float> a(small_grid());
  a.fill(1.0f);
  Volume<float> b = a.clone();
  b(0, 0, 0) = 2.0f;
  EXPECT_EQ(a(0, 0, 0), 1.0f);
  const float* p = b.data();
  Volume<float> c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_TRUE(c.owns_memory());
}

TEST(Volume, WrapDoesNotCopyOrOwn) {
  std::vector<float> buffer(60, 4.0f);
  auto v = Volume<float>::wrap(buffer.data(), small_grid());
  EXPECT_EQ(v.data(), buffer.data());
  EXPECT_FALSE(v.owns_memory());
  v(1, 1, 1) = 9.0f;
  EXPECT_EQ(buffer[1 * 20 + 1 * 5 + 1], 9.0f);
}

TEST(Memory, DeviceRequestWithoutCudaIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  try {
    Volume<float> v(small_grid(), 1, MemorySpace::Device);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Cuda);
  }
}

TEST(Memory, RequireAvailableRefusesImpossibleSizes) {
  EXPECT_NO_THROW(require_available(1024, MemorySpace::Host, "small.nii"));
  try {
    require_available(std::size_t(1) << 62, MemorySpace::Host, "huge.nii");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("huge.nii"), std::string::npos);
  }
}

TEST(Memory, HostToHostCopy) {
  std::vector<double> a{1, 2, 3}, b(3);
  copy_bytes(b.data(), MemorySpace::Host, a.data(), MemorySpace::Host, 3 * sizeof(double));
  EXPECT_EQ(a, b);
}

TEST(ErrorType, CarriesKindWhereAndProblem) {
  try {
    throw_error(ErrorKind::InvalidInput, "brain.nii.gz", "spacing is zero");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_EQ(e.where(), "brain.nii.gz");
    EXPECT_EQ(e.problem(), "spacing is zero");
    EXPECT_STREQ(e.what(), "brain.nii.gz: spacing is zero");
  }
}

TEST(ErrorType, RequireNamesTheFunction) {
  auto f = [] { GIGAREG_REQUIRE(1 + 1 == 3, "arithmetic is broken"); };
  try {
    f();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("arithmetic is broken"), std::string::npos);
  }
}

TEST(Log, SinkCanBeRedirectedAndRestored) {
  std::vector<std::pair<LogLevel, std::string>> seen;
  LogSink previous = set_log_sink([&](LogLevel l, std::string_view m) { seen.emplace_back(l, std::string(m)); });
  const LogLevel old_level = log_level();
  set_log_level(LogLevel::Info);
  log(LogLevel::Debug, "dropped");
  log(LogLevel::Info, "kept");
  log(LogLevel::Error, "also kept");
  set_log_sink(previous);
  set_log_level(old_level);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].second, "kept");
  EXPECT_EQ(seen[1].first, LogLevel::Error);
}

TEST(Config, ReportsBuildFeatures) {
  EXPECT_STRNE(GIGAREG_VERSION, "");
  EXPECT_TRUE(GIGAREG_WITH_CUDA == 0 || GIGAREG_WITH_CUDA == 1);
}

// Large copies between pageable host memory and the device go through pinned chunks (two
// buffers, a copy thread per piece): the bytes arrive unchanged in both directions, for sizes that
// are not a multiple of the chunk, into and out of offsets that are not chunk-aligned; zero_bytes
// clears device memory.
TEST(Memory, LargeHostDeviceCopiesAreExactAndZeroBytesClears) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::size_t bytes = (std::size_t(64) << 20) * 3 + 12345;
  std::vector<unsigned char> host(bytes + 7), back(bytes + 7, 0);
  std::uint64_t x = 88172645463325252ull;
  for (unsigned char& b : host) {  // xorshift: no repeating pattern a chunk mix-up could hide in
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<unsigned char>(x);
  }
  void* dev = allocate_bytes(bytes + 64, MemorySpace::Device, "test");
  copy_bytes(static_cast<char*>(dev) + 3, MemorySpace::Device, host.data() + 5, MemorySpace::Host, bytes);
  copy_bytes(back.data() + 1, MemorySpace::Host, static_cast<char*>(dev) + 3, MemorySpace::Device, bytes);
  EXPECT_EQ(std::memcmp(back.data() + 1, host.data() + 5, bytes), 0);
  zero_bytes(dev, MemorySpace::Device, bytes + 64);
  copy_bytes(back.data(), MemorySpace::Host, dev, MemorySpace::Device, bytes);
  EXPECT_EQ(std::count(back.begin(), back.begin() + std::ptrdiff_t(bytes), 0), std::ptrdiff_t(bytes));
  free_bytes(dev, MemorySpace::Device);
}
