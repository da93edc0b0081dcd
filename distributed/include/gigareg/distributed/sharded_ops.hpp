#pragma once
// Sharded ops: the single-process ops of include/gigareg/ops run on each rank's slab with its
// halo, plus the communication that makes the result the single-process one. Nothing here
// re-implements an op's math: every op already works on a box of a global grid, reads inputs
// inside their views and applies boundary rules at the global grid edge.
//
// What is global, and how it is made exactly the single-process number:
//   - loss sums {S, C}, counts: per-z-slice partials of every rank are all-gathered in rank order
//     (= global slice order for slabs) and summed slice by slice like reduce_slices: bitwise the
//     whole-volume reduce_slices for any P.
//   - Mattes MI: int64 fixed-point joint histograms summed with an integer all-reduce (exact), then
//     every rank computes MI and the gradient table from the same global histogram.
//   - max-norms and intensity ranges: all-reduce max / min (exact).
// Per-voxel outputs on owned boxes are bitwise the whole-volume outputs on the CPU backend (the CPU
// ops are bitwise independent of the box; see each op's header); on CUDA they agree within the
// ops' stated float tolerances (the CUDA LNCC result depends on the owned box's tiling).
//
// Arrays that need a halo are passed as Volumes whose box contains halo_box(rank, halo) for the
// halo named below; ops that own the halo refresh (the default Exchange) fill it first. Arrays
// without halo are views containing the owned box.

#include <cstdint>
#include <vector>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/distributed/decomposition.hpp"
#include "gigareg/distributed/halo.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::dist {

/// What a sharded op needs: the backend, the communicator and the decomposition of the fixed grid.
/// Checked on construction: the decomposition has comm.size() ranks and is slabs, the
/// communicator's memory is the backend's, and an NCCL communicator runs on ctx.stream.
class Shard {
 public:
  Shard(const Context& ctx, Communicator& comm, const Decomposition& decomposition);
  /// Slabs of `global_size` over comm.size() ranks.
  Shard(const Context& ctx, Communicator& comm, Index3 global_size);

  const Context& ctx() const { return ctx_; }
  Communicator& comm() const { return *comm_; }
  const Decomposition& decomposition() const { return decomposition_; }
  int rank() const { return comm_->rank(); }
  Box owned() const { return decomposition_.owned(comm_->rank()); }
  Box halo_box(Index3 halo) const { return decomposition_.halo_box(comm_->rank(), halo); }

 private:
  Context ctx_;
  Communicator* comm_;
  Decomposition decomposition_;
};

/// Which halo-carrying inputs an op refreshes before computing.
enum class Refresh {
  All,      // every input with a halo (default)
  Varying,  // only the ones that change every iteration (the warped image), not fixed and mask
  None,     // the caller has exchanged them
};

// --- halos the ops need --------------------------------------------------------------------
/// Gaussian smoothing: the kernel radii (gaussian_radii).
Index3 smoothing_halo(Vec3d sigma_voxels, double truncation = kDefaultGaussianTruncation);
/// LNCC: fixed and warped 2H (exact gradient) or H (ANTs approximation); the mask H or 0.
Index3 lncc_image_halo(const LnccParams& params);
Index3 lncc_mask_halo(const LnccParams& params);
/// compose_fields(v, u) on `grid`: u is sampled at x + v(x), at most |v|_2 / spacing_z voxels away
/// along z (the direction matrix is orthonormal), plus one voxel for the linear taps:
/// {0, 0, ceil(max_norm_mm / spacing_z) + 1} (with a relative margin of 1e-6 against rounding).
Index3 compose_halo(const Geometry& grid, double max_norm_mm);
/// Jacobian determinant: 1 voxel.
inline Index3 jacobian_halo() { return {1, 1, 1}; }

// --- reductions ----------------------------------------------------------------------------
/// The per-z-slice partials of this rank's owned slab (owned().size.z slices, in ctx's memory)
/// gathered from every rank and summed in global slice order: bitwise what reduce_slices gives for
/// the whole volume's partials.
std::vector<double> reduce_slices(const Shard& shard, const SlicePartials& local);
/// reduce_slices as a LossValue {S, C}.
LossValue reduce_loss(const Shard& shard, const SlicePartials& local);
/// Max over all ranks of the per-slice maxima of `term`.
double max_over_slices(const Shard& shard, const SlicePartials& local, int term = 0);

// --- ops -----------------------------------------------------------------------------------
/// out = G_sigma * in on owned (every component). `in` contains halo_box(smoothing_halo); its
/// halo is exchanged unless refresh is None. out contains owned.
void gaussian_smooth(const Shard& shard, Volume<float>& in, VolumeView<float> out,
                     Vec3d sigma_voxels, double truncation = kDefaultGaussianTruncation,
                     Refresh refresh = Refresh::All);

/// Mean squares (halo 0): the global {S, C}; grad (optional) = dS/dW on owned.
LossValue mse_loss(const Shard& shard, VolumeView<const float> fixed,
                   VolumeView<const float> warped, VolumeView<const float> mask,
                   VolumeView<float> grad);

/// LNCC: fixed and warped contain halo_box(lncc_image_halo), the mask (optional: nullptr)
/// halo_box(lncc_mask_halo). Refreshes fixed, warped and mask (All), warped only (Varying) or
/// nothing. Returns the global {S, C}; grad (optional) = dS/dW on owned, exactly the
/// whole-volume gradient there (no reverse exchange: the 2H halo covers every window that
/// touches an owned voxel).
LossValue lncc_loss(const Shard& shard, Volume<float>& fixed, Volume<float>& warped,
                    Volume<float>* mask, const LnccParams& params, VolumeView<float> grad,
                    Refresh refresh = Refresh::All);

/// The global (masked) intensity range of `image` (halo 0): all-reduce min / max.
IntensityRange intensity_range(const Shard& shard, VolumeView<const float> image,
                               VolumeView<const float> mask);

/// The global joint histogram: each rank's histogram of its owned voxels, summed over ranks with
/// an int64 all-reduce (exact). hist in ctx's memory.
void mattes_histogram(const Shard& shard, VolumeView<const float> fixed,
                      VolumeView<const float> warped, VolumeView<const float> mask,
                      const MattesParams& params, JointHistogram hist);

/// Mattes MI (halo 0): global histogram, then MI and the gradient table on every rank (the
/// same numbers everywhere), then grad (optional) = dS/dW on owned. Returns {-MI T, T}. When
/// `histogram` is non-null it receives the global histogram (host copy, bins^2).
LossValue mattes_mi(const Shard& shard, VolumeView<const float> fixed,
                    VolumeView<const float> warped, VolumeView<const float> mask,
                    const MattesParams& params, VolumeView<float> grad,
                    std::vector<std::int64_t>* histogram = nullptr);

/// The global max over voxels of the Euclidean norm of a 3-component field (owned voxels of
/// every rank): exact.
double max_norm(const Shard& shard, VolumeView<const float> field);

/// The compositive update out(x) = v(x) + u(x + v(x)) on owned (identity affine, u and v on
/// `grid`, the fixed grid). v contains owned. The halo of u follows the displacement:
/// h = compose_halo(grid, max_norm(v)) from the GLOBAL max (so every rank uses the same h); when
/// u's box does not contain halo_box(h) u is re-allocated with that box (rebox, owned voxels kept)
/// before the exchange. Returns h. out must not alias u.
Index3 compose_fields(const Shard& shard, VolumeView<const float> v, const Geometry& grid,
                      Volume<float>& u, VolumeView<float> out);

/// det(I + du/dx) on owned (det optional) and the global number of voxels with det <= 0 or NaN.
/// u contains halo_box(jacobian_halo()); refreshed unless refresh is None.
std::int64_t jacobian_determinant(const Shard& shard, Volume<float>& u, const Geometry& grid,
                                  VolumeView<float> det, Refresh refresh = Refresh::All);

}  // namespace gigareg::dist
