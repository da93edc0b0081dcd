#pragma once
// How the fixed grid of a registration is split between the processes that run it together, and
// the collective operations the pipeline needs to turn per-process work into the global result.
//
// The pipeline (register_images) is written once, against this interface: every level-grid array
// is held on the process's owned box (plus the halo its ops read), every reduction goes through
// per-z-slice partials gathered in global slice order, and every global number (loss, ranges,
// max-norms, the affine gradient, MI histograms) is the same on every process. The single-process
// partition (single_process()) owns every grid whole and its collectives are identities; the
// distributed layer implements it over MPI or NCCL (gigareg::dist::ShardPartition). Because the
// ops compute each owned voxel from the same inputs in the same order whatever the box, and the
// reductions are combined in the same order, P processes reproduce the single process bitwise on
// the CPU backend.
//
// Decomposition: z slabs of every grid, rank r of P owning [floor(nz r / P), floor(nz (r+1) / P))
// (the rule of gigareg::dist::Decomposition::slabs). Every call below is collective: all
// processes make the same calls in the same order.

#include <cstdint>
#include <vector>

#include "gigareg/device/view.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

class Partition {
 public:
  virtual ~Partition() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// The box this process owns of a grid of `grid_size` voxels.
  virtual Box owned(Index3 grid_size) const = 0;
  /// owned(grid_size) grown by `halo` on both sides along each axis, clipped to the grid.
  Box halo_box(Index3 grid_size, Index3 halo) const;

  /// Fills the halo (halo_box(halo) minus owned) of each volume from the processes that own it.
  /// Each volume's box contains halo_box(its grid size, halo); memory in the backend's space.
  virtual void exchange_halos(const std::vector<Volume<float>*>& volumes, Index3 halo) const = 0;

  /// A volume with box `want` (whole x-y planes of the grid; empty: none wanted) holding the
  /// voxels of a sharded array whose owned part on this process is in `local` (local.box()
  /// contains owned(grid size)). Each process may want a different box; the voxels come from
  /// their owners. Used between pyramid levels (the upsampled field needs the coarse voxels
  /// under the fine slab) and to collect outputs.
  virtual Volume<float> fetch(const Volume<float>& local, const Box& want) const = 0;

  /// `global` (grid_z slices, same terms and memory as `local`) receives every process's
  /// per-slice partials of its owned slices, in global slice order: exactly the partials the
  /// single process computes for the whole grid. No host synchronisation on device memory.
  virtual void gather_slices(const SlicePartials& local, index_t grid_z, SlicePartials global,
                             MemorySpace space) const = 0;

  /// In-place integer sum over processes (MI joint histograms: exact, order-free), in the
  /// backend's memory.
  virtual void allreduce_sum(std::int64_t* data, std::size_t count) const = 0;
  /// gather_slices for partials in host memory (whatever the backend), returned whole.
  virtual std::vector<double> gather_host_slices(const std::vector<double>& local, index_t grid_z,
                                                 int terms) const = 0;

  /// Host values combined over processes (exact).
  virtual double max(double value) const = 0;
  virtual double min(double value) const = 0;
  /// True on every process iff `value` is true on every process (collective decisions).
  virtual bool all(bool value) const = 0;

  /// Every process's `values` (the same count on each), concatenated in rank order, on every
  /// process: small host integers such as the sizes that place each process's part of a shared
  /// file. Exact for |value| < 2^53 (carried by gather_host_slices as doubles: one slice per
  /// process); larger values are an Error(InvalidArgument).
  std::vector<std::int64_t> gather_host_values(const std::vector<std::int64_t>& values) const;
};

/// The partition of a single process: it owns every grid whole.
const Partition& single_process();

}  // namespace gigareg
