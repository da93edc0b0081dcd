// Slab (and block) decompositions: balance, coverage, halo boxes, neighbours, errors. Pure
// arithmetic: every rank checks the same things.

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "gigareg/distributed/decomposition.hpp"
#include "gigareg/error.hpp"
#include "mpi_test.hpp"

namespace gigareg::dist {
namespace {

TEST(DistDecomposition, SlabsAreBalancedContiguousAndCoverTheGrid) {
  for (index_t nz : {1, 2, 3, 7, 16, 33, 100})
    for (int p = 1; p <= 9; ++p) {
      if (p > nz) {
        EXPECT_THROW(Decomposition::slabs({5, 4, nz}, p), Error);
        continue;
      }
      const Decomposition d = Decomposition::slabs({5, 4, nz}, p);
      EXPECT_TRUE(d.is_slabs());
      EXPECT_EQ(d.ranks(), p);
      index_t next = 0, smallest = nz, largest = 0;
      for (int r = 0; r < p; ++r) {
        const Box b = d.owned(r);
        EXPECT_EQ(b.lo.x, 0);
        EXPECT_EQ(b.lo.y, 0);
        EXPECT_EQ(b.size.x, 5);
        EXPECT_EQ(b.size.y, 4);
        EXPECT_EQ(b.lo.z, next);  // rank order is z order
        EXPECT_GE(b.size.z, 1);
        next += b.size.z;
        smallest = std::min(smallest, b.size.z);
        largest = std::max(largest, b.size.z);
        EXPECT_EQ(d.neighbour(r, 2, -1), r == 0 ? -1 : r - 1);
        EXPECT_EQ(d.neighbour(r, 2, +1), r == p - 1 ? -1 : r + 1);
        EXPECT_EQ(d.neighbour(r, 0, -1), -1);
        EXPECT_EQ(d.neighbour(r, 1, +1), -1);
      }
      EXPECT_EQ(next, nz);
      EXPECT_LE(largest - smallest, 1);
      EXPECT_EQ(d.max_owned_slices(), largest);
    }
  EXPECT_THROW(Decomposition::slabs({4, 4, 4}, 0), Error);
}

TEST(DistDecomposition, HaloBoxesAreClippedToTheGrid) {
  const Decomposition d = Decomposition::slabs({6, 5, 20}, 4);  // slabs of 5
  EXPECT_EQ(d.halo_box(0, {0, 0, 2}), (Box{{0, 0, 0}, {6, 5, 7}}));
  EXPECT_EQ(d.halo_box(1, {0, 0, 2}), (Box{{0, 0, 3}, {6, 5, 9}}));
  EXPECT_EQ(d.halo_box(3, {0, 0, 2}), (Box{{0, 0, 13}, {6, 5, 7}}));
  EXPECT_EQ(d.halo_box(1, {3, 3, 3}), (Box{{0, 0, 2}, {6, 5, 11}}));  // x, y clipped
  EXPECT_EQ(d.halo_box(2, {0, 0, 100}), (Box{{0, 0, 0}, {6, 5, 20}}));
  EXPECT_EQ(d.owners(d.halo_box(1, {0, 0, 2})), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(d.owners(d.halo_box(1, {0, 0, 6})), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_THROW(d.halo_box(0, {0, 0, -1}), Error);
}

TEST(DistDecomposition, BlocksTileTheGrid) {
  const Decomposition d = Decomposition::blocks({7, 5, 9}, {2, 1, 3});
  EXPECT_FALSE(d.is_slabs());
  EXPECT_EQ(d.ranks(), 6);
  index_t voxels = 0;
  for (int r = 0; r < d.ranks(); ++r) {
    voxels += d.owned(r).voxel_count();
    EXPECT_EQ(d.rank_at(d.rank_coords(r)), r);
    for (int q = 0; q < r; ++q) EXPECT_TRUE(intersect(d.owned(q), d.owned(r)).empty());
  }
  EXPECT_EQ(voxels, 7 * 5 * 9);
  EXPECT_EQ(d.neighbour(0, 0, +1), 1);  // x fastest
  EXPECT_EQ(d.neighbour(0, 2, +1), 2);
  EXPECT_EQ(d.neighbour(1, 0, +1), -1);
  EXPECT_THROW(Decomposition::blocks({7, 5, 9}, {8, 1, 1}), Error);
}

}  // namespace
}  // namespace gigareg::dist
