#include "gigareg/distributed/decomposition.hpp"

#include <algorithm>
#include <string>

#include "gigareg/error.hpp"

namespace gigareg::dist {
namespace {

// [floor(n c / p), floor(n (c + 1) / p)): balanced, deterministic, non-empty when p <= n.
index_t split_lo(index_t n, index_t p, index_t c) { return n * c / p; }

}  // namespace

Box intersect(const Box& a, const Box& b) {
  Box r;
  for (int ax = 0; ax < 3; ++ax) {
    const index_t lo = std::max(a.lo[ax], b.lo[ax]);
    const index_t hi = std::min(a.lo[ax] + a.size[ax], b.lo[ax] + b.size[ax]);
    r.lo[ax] = lo;
    r.size[ax] = std::max<index_t>(0, hi - lo);
  }
  return r;
}

Decomposition Decomposition::slabs(Index3 global_size, int ranks) {
  return blocks(global_size, {1, 1, index_t(ranks)});
}

Decomposition Decomposition::blocks(Index3 global_size, Index3 rank_grid) {
  const char* axes = "xyz";
  for (int a = 0; a < 3; ++a) {
    if (global_size[a] < 1)
      throw_error(ErrorKind::InvalidArgument, "Decomposition", "the grid is empty");
    if (rank_grid[a] < 1)
      throw_error(ErrorKind::InvalidArgument, "Decomposition", "need at least one rank per axis");
    if (rank_grid[a] > global_size[a])
      throw_error(ErrorKind::InvalidArgument, "Decomposition",
                  std::to_string(rank_grid[a]) + " ranks along " + axes[a] + " but the grid has only " +
                      std::to_string(global_size[a]) + " voxels there (every rank owns at least one)");
  }
  Decomposition d;
  d.global_size_ = global_size;
  d.grid_ = rank_grid;
  return d;
}

Index3 Decomposition::rank_coords(int rank) const {
  GIGAREG_REQUIRE(rank >= 0 && rank < ranks(), "rank outside the decomposition");
  const index_t r = rank;
  return {r % grid_.x, (r / grid_.x) % grid_.y, r / (grid_.x * grid_.y)};
}

int Decomposition::rank_at(Index3 c) const {
  for (int a = 0; a < 3; ++a)
    if (c[a] < 0 || c[a] >= grid_[a]) return -1;
  return int(c.x + grid_.x * (c.y + grid_.y * c.z));
}

Box Decomposition::owned(int rank) const {
  const Index3 c = rank_coords(rank);
  Box b;
  for (int a = 0; a < 3; ++a) {
    b.lo[a] = split_lo(global_size_[a], grid_[a], c[a]);
    b.size[a] = split_lo(global_size_[a], grid_[a], c[a] + 1) - b.lo[a];
  }
  return b;
}

Box Decomposition::halo_box(int rank, Index3 halo) const {
  for (int a = 0; a < 3; ++a) GIGAREG_REQUIRE(halo[a] >= 0, "a halo cannot be negative");
  return owned(rank).grown_within(halo, global_size_);
}

int Decomposition::neighbour(int rank, int axis, int side) const {
  GIGAREG_REQUIRE(axis >= 0 && axis < 3 && (side == -1 || side == 1), "axis 0..2, side -1 or +1");
  Index3 c = rank_coords(rank);
  c[axis] += side;
  return rank_at(c);
}

std::vector<int> Decomposition::owners(const Box& box) const {
  std::vector<int> r;
  for (int q = 0; q < ranks(); ++q)
    if (!intersect(owned(q), box).empty()) r.push_back(q);
  return r;
}

index_t Decomposition::max_owned_slices() const {
  // Thickest slab: ceil(nz / pz) (the split sizes are floor or ceil of nz / pz).
  return (global_size_.z + grid_.z - 1) / grid_.z;
}

}  // namespace gigareg::dist
