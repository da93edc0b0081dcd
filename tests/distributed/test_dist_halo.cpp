// Halo exchange on z-slabs: halos filled bitwise from their owners (including halos thicker
// than a neighbour's slab), bytes per exchange independent of the slab thickness, extracting and
// gathering shards.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "gigareg/distributed/halo.hpp"
#include "gigareg/error.hpp"
#include "mpi_test.hpp"
#include "test_util.hpp"

namespace gigareg::dist {
namespace {

using gigareg::test::bitwise_equal;
using gigareg::test::make_geometry;
using gigareg::test::random_volume;
using test::poisoned_shard;
using test::world;

TEST(DistHalo, ExchangeFillsHalosBitwise) {
  Communicator& c = world();
  const Geometry g = make_geometry({11, 9, 4 * index_t(c.size()) + 3});
  const Volume<float> whole = random_volume(g, 17, -5.0, 5.0, 3);
  const Decomposition d = Decomposition::slabs(g.size, c.size());
  for (index_t h : {1, 2, 3, 9}) {  // 9: thicker than every slab (reads from ranks beyond)
    const Index3 halo{0, 0, h};
    const Box box = d.halo_box(c.rank(), halo);
    Volume<float> shard = poisoned_shard(whole, box, d.owned(c.rank()));
    exchange_halo(c, d, shard, halo);
    EXPECT_ALL_RANKS(bitwise_equal(shard, whole, box));
  }
}

TEST(DistHalo, ExchangeIntoALargerBoxLeavesTheRestAlone) {
  Communicator& c = world();
  const Geometry g = make_geometry({8, 7, 5 * index_t(c.size())});
  const Volume<float> whole = random_volume(g, 5, 0.0, 1.0, 1);
  const Decomposition d = Decomposition::slabs(g.size, c.size());
  const Box big = d.halo_box(c.rank(), {0, 0, 3}), need = d.halo_box(c.rank(), {0, 0, 1});
  Volume<float> shard = poisoned_shard(whole, big, d.owned(c.rank()));
  exchange_halo(c, d, shard, {0, 0, 1});
  EXPECT_ALL_RANKS(bitwise_equal(shard, whole, need));
  // Outside the halo box of h = 1 nothing was written.
  bool untouched = true;
  for (index_t k = big.lo.z; k < big.hi().z; ++k)
    if (k < need.lo.z || k >= need.hi().z) untouched = untouched && std::isnan(shard(0, 0, k));
  EXPECT_ALL_RANKS(untouched);
  // A box without the halo is refused (the same on every rank).
  Volume<float> thin = extract_box(whole, d.owned(c.rank()));
  if (c.size() > 1) {
    EXPECT_THROW(exchange_halo(c, d, thin, {0, 0, 1}), Error);
  }
}

TEST(DistHalo, SeveralVolumesInOneGroupedExchange) {
  Communicator& c = world();
  const Geometry g = make_geometry({6, 10, 3 * index_t(c.size()) + 1});
  const Decomposition d = Decomposition::slabs(g.size, c.size());
  const Volume<float> a = random_volume(g, 1, -1, 1, 1), b = random_volume(g, 2, -1, 1, 3);
  const Index3 halo{0, 0, 2};
  const Box box = d.halo_box(c.rank(), halo), own = d.owned(c.rank());
  Volume<float> sa = poisoned_shard(a, box, own), sb = poisoned_shard(b, box, own);
  c.reset_stats();
  exchange_halos(c, d, {halo_target(sa), halo_target(sb)}, halo);
  EXPECT_ALL_RANKS(bitwise_equal(sa, a, box) && bitwise_equal(sb, b, box));
  EXPECT_EQ(c.stats().exchanges, 1u);
}

// Bytes sent per exchange depend on the face (h x nx x ny x components), not on the slab
// thickness: doubling nz with the same P leaves them unchanged.
TEST(DistHalo, BytesPerExchangeDoNotGrowWithSlabThickness) {
  Communicator& c = world();
  const int p = c.size(), r = c.rank();
  const index_t nx = 24, ny = 20, h = 2;
  const int components = 3;
  std::uint64_t bytes[2] = {0, 0};
  for (int t = 0; t < 2; ++t) {
    const index_t nz = (t == 0 ? 8 : 16) * index_t(p);
    const Geometry g = make_geometry({nx, ny, nz});
    const Decomposition d = Decomposition::slabs(g.size, p);
    const Volume<float> whole = random_volume(g, 3, -1, 1, components);
    Volume<float> shard = poisoned_shard(whole, d.halo_box(r, {0, 0, h}), d.owned(r));
    c.reset_stats();
    const HaloStats s = exchange_halo(c, d, shard, {0, 0, h});
    EXPECT_EQ(s.bytes_sent, c.stats().bytes_sent);
    bytes[t] = s.bytes_sent;
    EXPECT_ALL_RANKS(bitwise_equal(shard, whole, shard.box()));
  }
  const int faces = (r > 0 ? 1 : 0) + (r < p - 1 ? 1 : 0);
  const std::uint64_t face = std::uint64_t(h * nx * ny) * components * sizeof(float);
  EXPECT_ALL_RANKS(bytes[0] == bytes[1]);
  EXPECT_ALL_RANKS(bytes[0] == faces * face);
  if (r == 0)
    std::printf("[ bytes    ] halo exchange, h=%d, %dx%d, 3 components: %llu bytes sent per interior "
                "rank for nz = %d and %d\n",
                int(h), int(nx), int(ny), static_cast<unsigned long long>(2 * face), 8 * p, 16 * p);
}

TEST(DistHalo, GatherToRootRebuildsTheWholeVolume) {
  Communicator& c = world();
  const Geometry g = make_geometry({9, 8, 2 * index_t(c.size()) + 5});
  const Decomposition d = Decomposition::slabs(g.size, c.size());
  const Volume<float> whole = random_volume(g, 9, -3, 3, 3);
  // Shards with a halo: only the owned part is gathered.
  const Volume<float> shard = poisoned_shard(whole, d.halo_box(c.rank(), {0, 0, 1}), d.owned(c.rank()));
  const int root = c.size() - 1;
  const Volume<float> gathered = gather_to_root(c, d, shard, root);
  if (c.rank() != root) {
    EXPECT_TRUE(gathered.empty());
  }
  EXPECT_ALL_RANKS(c.rank() != root || bitwise_equal(gathered, whole, whole.box()));
}

TEST(DistHalo, ExtractAndRebox) {
  const Geometry g = make_geometry({7, 6, 10});
  const Volume<float> whole = random_volume(g, 4, -1, 1, 3);
  const Box slab{{0, 0, 3}, {7, 6, 4}}, block{{1, 2, 3}, {4, 3, 2}};
  EXPECT_TRUE(bitwise_equal(extract_box(whole, slab), whole, slab));
  EXPECT_TRUE(bitwise_equal(extract_box(whole, block), whole, block));
  const Volume<float> s = extract_box(whole, slab);
  const Box grown{{0, 0, 1}, {7, 6, 8}};
  const Volume<float> r = rebox(s, grown);
  EXPECT_EQ(r.box(), grown);
  EXPECT_TRUE(bitwise_equal(r, whole, slab));
  EXPECT_THROW(extract_box(s, grown), Error);
}

}  // namespace
}  // namespace gigareg::dist
