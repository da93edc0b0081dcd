#pragma once
// Domain decomposition of the fixed grid over ranks.
//
// Each rank owns a box of the fixed grid and all per-voxel state on it (u, gradient, moments).
// Today's decompositions are slabs along z, the slowest axis: an owned slab is one contiguous
// block of memory per component plane, a z-face is one contiguous block per component, and
// per-z-slice partials of the ranks concatenate (in rank order) into the whole volume's partials,
// which is what makes sharded reductions bitwise equal to the single process. The class is laid
// out for 3-D blocks (a grid of ranks, owned boxes, a neighbour per face); blocks() builds one,
// but the halo exchange and the sharded ops currently require slabs (rank_grid = {1, 1, P}) and
// say so when given blocks.
//
// Balance: along each axis n voxels split over p ranks give rank c the range
// [floor(n c / p), floor(n (c + 1) / p)): sizes differ by at most one, each is at least one voxel
// when p <= n (an error otherwise), and the split depends only on (n, p): deterministic.
// Rank numbering: rank = cx + px (cy + py cz), x fastest.

#include <vector>

#include "gigareg/device/view.hpp"

namespace gigareg::dist {

class Decomposition {
 public:
  Decomposition() = default;

  /// Slabs along z over `ranks` ranks. Throws InvalidArgument when ranks < 1 or ranks > nz.
  static Decomposition slabs(Index3 global_size, int ranks);
  /// Blocks over a px x py x pz grid of ranks (each p_a <= n_a).
  static Decomposition blocks(Index3 global_size, Index3 rank_grid);

  int ranks() const { return int(grid_.x * grid_.y * grid_.z); }
  Index3 global_size() const { return global_size_; }
  Index3 rank_grid() const { return grid_; }
  bool is_slabs() const { return grid_.x == 1 && grid_.y == 1; }

  Index3 rank_coords(int rank) const;
  int rank_at(Index3 coords) const;  // -1 outside the rank grid

  /// The box `rank` owns. The owned boxes tile the grid without overlap.
  Box owned(int rank) const;
  /// owned(rank) grown by halo[a] voxels on both sides along each axis a, clipped to the grid.
  Box halo_box(int rank, Index3 halo) const;
  /// The rank across the face of `rank` on `axis` (0, 1, 2) at `side` (-1 low, +1 high), or -1
  /// at the grid edge.
  int neighbour(int rank, int axis, int side) const;
  /// Ranks whose owned boxes intersect `box`, in increasing order.
  std::vector<int> owners(const Box& box) const;
  /// The largest owned extent along z over all ranks (for fixed-size gathers of slice partials).
  index_t max_owned_slices() const;

 private:
  Index3 global_size_{0, 0, 0};
  Index3 grid_{1, 1, 1};
};

/// a ∩ b (empty size when they do not meet).
Box intersect(const Box& a, const Box& b);

}  // namespace gigareg::dist
