// Sharded ops: halo exchange + the single-process op on the owned slab + the global reduction.
// No op's math is repeated here.

#include "gigareg/distributed/sharded_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gigareg/device/adam.hpp"
#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"

namespace gigareg::dist {
namespace {

/// n elements of T in `space`, freed on destruction (partials, histograms, gather buffers).
template <class T>
class Scratch {
 public:
  Scratch(std::size_t n, MemorySpace space)
      : n_(n), space_(space),
        data_(static_cast<T*>(allocate_bytes(std::max<std::size_t>(n, 1) * sizeof(T), space,
                                             "sharded op scratch"))) {}
  ~Scratch() { free_bytes(data_, space_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() const { return data_; }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    if (n_ > 0) copy_bytes(h.data(), MemorySpace::Host, data_, space_, n_ * sizeof(T));
    return h;
  }
  void from_host(const std::vector<T>& h) {
    if (!h.empty()) copy_bytes(data_, space_, h.data(), MemorySpace::Host, h.size() * sizeof(T));
  }

 private:
  std::size_t n_;
  MemorySpace space_;
  T* data_;
};

/// Every rank's `values` (the same count everywhere), in rank order, on the host.
std::vector<double> allgather_host(Communicator& comm, const std::vector<double>& values) {
  const std::size_t n = values.size();
  std::vector<double> all(n * std::size_t(comm.size()));
  if (n == 0) return all;
  if (comm.memory_space() == MemorySpace::Host) {
    comm.allgather(values.data(), all.data(), n * sizeof(double));
    return all;
  }
  Scratch<double> send(n, comm.memory_space()), recv(all.size(), comm.memory_space());
  send.from_host(values);
  comm.allgather(send.data(), recv.data(), n * sizeof(double));
  comm.synchronize();
  return recv.to_host();
}

/// The op's outputs in ctx's stream are complete before host copies through copy_bytes.
void settle(const Shard& shard) {
  if (shard.ctx().backend == Backend::Cuda) shard.comm().synchronize();
}

SlicePartials partials_of(const Scratch<double>& s, index_t slices, int terms) {
  return {s.data(), slices, terms};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Shard::Shard(const Context& ctx, Communicator& comm, const Decomposition& decomposition)
    : ctx_(ctx), comm_(&comm), decomposition_(decomposition) {
  const char* op = "Shard";
  if (decomposition.ranks() != comm.size())
    throw_error(ErrorKind::InvalidArgument, op,
                "the decomposition has " + std::to_string(decomposition.ranks()) +
                    " ranks, the communicator " + std::to_string(comm.size()));
  if (!decomposition.is_slabs())
    throw_error(ErrorKind::InvalidArgument, op, "sharded ops need a z-slab decomposition");
  if (comm.memory_space() != ctx.memory_space())
    throw_error(ErrorKind::InvalidArgument, op,
                std::string("the ") + to_string(comm.backend()) + " communicator works on " +
                    to_string(comm.memory_space()) + " memory, the " + to_string(ctx.backend) +
                    " backend on " + to_string(ctx.memory_space()) + " memory");
  if (comm.backend() == CommBackend::Nccl && comm.stream() != ctx.stream)
    throw_error(ErrorKind::InvalidArgument, op,
                "the NCCL communicator must run on the context's stream");
}

Shard::Shard(const Context& ctx, Communicator& comm, Index3 global_size)
    : Shard(ctx, comm, Decomposition::slabs(global_size, comm.size())) {}

// ---------------------------------------------------------------------------------------------
Index3 smoothing_halo(Vec3d sigma_voxels, double truncation) {
  return gaussian_radii(sigma_voxels, truncation);
}

Index3 lncc_image_halo(const LnccParams& params) {
  const index_t h = lncc_window_radius(params);
  const index_t r = params.gradient == LnccGradient::Exact ? 2 * h : h;
  return {r, r, r};
}

Index3 lncc_mask_halo(const LnccParams& params) {
  const index_t h = params.gradient == LnccGradient::Exact ? lncc_window_radius(params) : 0;
  return {h, h, h};
}

Index3 compose_halo(const Geometry& grid, double max_norm_mm) {
  if (!(max_norm_mm >= 0.0) || !std::isfinite(max_norm_mm))
    throw_error(ErrorKind::InvalidArgument, "compose_halo",
                "the displacement bound is not a finite non-negative number (" +
                    std::to_string(max_norm_mm) + " mm)");
  // Largest z-index displacement of a physical displacement of norm max_norm_mm: the norm of the
  // z row of the physical -> index map (1 / spacing_z for an orthonormal direction matrix).
  const Mat3d g = grid.physical_to_index_map().matrix;
  const double row = std::sqrt(g(2, 0) * g(2, 0) + g(2, 1) * g(2, 1) + g(2, 2) * g(2, 2));
  const double d = max_norm_mm * row;
  // The kernel computes the sample position in float: allow for its rounding (relative to the
  // index and to the displacement), then one voxel for the upper linear tap.
  const double margin = 1e-6 * (d + double(grid.size.z)) + 1e-6;
  const double h = std::ceil(d + margin) + 1.0;
  const double cap = double(grid.size.z);  // a halo beyond the grid is clipped anyway
  return {0, 0, index_t(std::min(h, cap))};
}

// ---------------------------------------------------------------------------------------------
std::vector<double> reduce_slices(const Shard& shard, const SlicePartials& local) {
  const Decomposition& d = shard.decomposition();
  Communicator& comm = shard.comm();
  GIGAREG_REQUIRE(local.terms >= 1, "partials need at least one term");
  GIGAREG_REQUIRE(local.slices == shard.owned().size.z,
                  "the partials must have one slice per z slice of the owned slab");
  GIGAREG_REQUIRE(local.data != nullptr || local.slices == 0, "the partials are empty");
  settle(shard);
  // Fixed-size blocks for the all-gather: the thickest slab's slices, padded with zeros.
  const std::size_t terms = std::size_t(local.terms);
  const std::size_t block = std::size_t(d.max_owned_slices()) * terms;
  std::vector<double> mine(block, 0.0);
  const std::size_t n = std::size_t(local.slices) * terms;
  if (n > 0) copy_bytes(mine.data(), MemorySpace::Host, local.data, shard.ctx().memory_space(),
                        n * sizeof(double));
  const std::vector<double> all = allgather_host(comm, mine);
  // Concatenate the ranks' real slices in rank order (= global z order for slabs) and sum them
  // slice by slice exactly as reduce_slices does for the whole volume.
  std::vector<double> global;
  global.reserve(std::size_t(d.global_size().z) * terms);
  for (int q = 0; q < comm.size(); ++q) {
    const std::size_t valid = std::size_t(d.owned(q).size.z) * terms;
    global.insert(global.end(), all.begin() + std::ptrdiff_t(q * block),
                  all.begin() + std::ptrdiff_t(q * block + valid));
  }
  return gigareg::reduce_slices(Context::cpu(),
                                SlicePartials{global.data(), d.global_size().z, local.terms});
}

LossValue reduce_loss(const Shard& shard, const SlicePartials& local) {
  GIGAREG_REQUIRE(local.terms == kLossTerms, "a loss has kLossTerms terms");
  const std::vector<double> t = reduce_slices(shard, local);
  return {t[0], t[1]};
}

double max_over_slices(const Shard& shard, const SlicePartials& local, int term) {
  settle(shard);
  const double mine = gigareg::max_over_slices(shard.ctx(), local, term);
  double m = -std::numeric_limits<double>::infinity();
  for (double x : allgather_host(shard.comm(), {mine})) {  // the same rule as over slices
    if (x > m || std::isnan(x)) m = x;
    if (std::isnan(m)) break;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
void gaussian_smooth(const Shard& shard, Volume<float>& in, VolumeView<float> out,
                     Vec3d sigma_voxels, double truncation, Refresh refresh) {
  const Index3 halo = smoothing_halo(sigma_voxels, truncation);
  if (refresh != Refresh::None) exchange_halo(shard.comm(), shard.decomposition(), in, halo);
  gigareg::gaussian_smooth(shard.ctx(), in.view(), out, sigma_voxels, shard.owned(), truncation);
}

LossValue mse_loss(const Shard& shard, VolumeView<const float> fixed,
                   VolumeView<const float> warped, VolumeView<const float> mask,
                   VolumeView<float> grad) {
  const Box owned = shard.owned();
  Scratch<double> p(std::size_t(owned.size.z) * kLossTerms, shard.ctx().memory_space());
  const SlicePartials partials = partials_of(p, owned.size.z, kLossTerms);
  gigareg::mse_loss(shard.ctx(), fixed, warped, mask, owned, partials, grad);
  return reduce_loss(shard, partials);
}

LossValue lncc_loss(const Shard& shard, Volume<float>& fixed, Volume<float>& warped,
                    Volume<float>* mask, const LnccParams& params, VolumeView<float> grad,
                    Refresh refresh) {
  Communicator& comm = shard.comm();
  const Decomposition& d = shard.decomposition();
  const Index3 image_halo = lncc_image_halo(params);
  if (refresh == Refresh::All) {
    exchange_halos(comm, d, {halo_target(fixed), halo_target(warped)}, image_halo);
    if (mask != nullptr) exchange_halo(comm, d, *mask, lncc_mask_halo(params));
  } else if (refresh == Refresh::Varying) {
    exchange_halo(comm, d, warped, image_halo);
  }
  const Box owned = shard.owned();
  Scratch<double> p(std::size_t(owned.size.z) * kLossTerms, shard.ctx().memory_space());
  const SlicePartials partials = partials_of(p, owned.size.z, kLossTerms);
  const VolumeView<const float> m = mask != nullptr ? mask->view() : VolumeView<float>{};
  gigareg::lncc_loss(shard.ctx(), fixed.view(), warped.view(), m, owned, params, partials, grad);
  return reduce_loss(shard, partials);
}

IntensityRange intensity_range(const Shard& shard, VolumeView<const float> image,
                               VolumeView<const float> mask) {
  const Box owned = shard.owned();
  Scratch<double> p(std::size_t(owned.size.z) * kRangeTerms, shard.ctx().memory_space());
  const SlicePartials partials = partials_of(p, owned.size.z, kRangeTerms);
  gigareg::intensity_range(shard.ctx(), image, mask, owned, partials);
  settle(shard);
  const IntensityRange mine = gigareg::reduce_intensity_range(shard.ctx(), partials);
  // Combined like the slices of one volume: min / max in rank (= slice) order.
  const std::vector<double> all = allgather_host(shard.comm(), {mine.min, mine.max});
  IntensityRange r{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  for (int q = 0; q < shard.comm().size(); ++q) {
    r.min = std::min(r.min, all[std::size_t(2 * q)]);
    r.max = std::max(r.max, all[std::size_t(2 * q + 1)]);
  }
  return r;
}

void mattes_histogram(const Shard& shard, VolumeView<const float> fixed,
                      VolumeView<const float> warped, VolumeView<const float> mask,
                      const MattesParams& params, JointHistogram hist) {
  GIGAREG_REQUIRE(hist.data != nullptr && hist.bins > 0, "the histogram is empty");
  gigareg::mattes_histogram(shard.ctx(), fixed, warped, mask, shard.owned(), params, hist);
  // Fixed-point counts: the integer sum over ranks is exact and order-independent.
  shard.comm().allreduce_sum(hist.data, std::size_t(hist.bins) * std::size_t(hist.bins));
}

LossValue mattes_mi(const Shard& shard, VolumeView<const float> fixed,
                    VolumeView<const float> warped, VolumeView<const float> mask,
                    const MattesParams& params, VolumeView<float> grad,
                    std::vector<std::int64_t>* histogram) {
  const MemorySpace space = shard.ctx().memory_space();
  const int bins = mattes_moving_axis(params).bins;
  const std::size_t cells = std::size_t(bins) * std::size_t(bins);
  Scratch<std::int64_t> hist(cells, space);
  Scratch<float> table(cells, space);
  Scratch<double> value(kLossTerms, space);
  mattes_histogram(shard, fixed, warped, mask, params, {hist.data(), bins});
  // Every rank computes the same MI and table from the same global histogram.
  gigareg::mattes_table(shard.ctx(), {hist.data(), bins}, params,
                        {grad.data != nullptr ? table.data() : nullptr, bins},
                        partials_of(value, 1, kLossTerms));
  if (grad.data != nullptr)
    gigareg::mattes_gradient(shard.ctx(), fixed, warped, mask, shard.owned(), params,
                             {table.data(), bins}, grad);
  settle(shard);
  if (histogram != nullptr) *histogram = hist.to_host();
  return gigareg::reduce_loss(shard.ctx(), partials_of(value, 1, kLossTerms));
}

double max_norm(const Shard& shard, VolumeView<const float> field) {
  const Box owned = shard.owned();
  Scratch<double> p(std::size_t(owned.size.z), shard.ctx().memory_space());
  const SlicePartials partials = partials_of(p, owned.size.z, 1);
  gigareg::max_norm_partials(shard.ctx(), field, owned, partials);
  settle(shard);
  const double mine = gigareg::reduce_slices_max(shard.ctx(), partials);
  // The same combination as over slices (max of bit patterns: exact, order-free, NaN wins).
  double best = 0.0;
  for (double x : allgather_host(shard.comm(), {mine})) best = max_norm_combine(best, x);
  return best;
}

Index3 compose_fields(const Shard& shard, VolumeView<const float> v, const Geometry& grid,
                      Volume<float>& u, VolumeView<float> out) {
  const Decomposition& d = shard.decomposition();
  GIGAREG_REQUIRE(grid.size == d.global_size(), "grid is not the decomposed grid");
  GIGAREG_REQUIRE(u.components() == 3 && u.geometry().size == grid.size,
                  "u must be a 3-component field on grid");
  // The halo comes from the GLOBAL bound, so every rank uses the same one (a prerequisite of
  // the exchange) and a rank whose own v is small still receives what its peers' samples need.
  const Index3 halo = compose_halo(grid, max_norm(shard, v));
  const Box need = shard.halo_box(halo);
  if (!u.box().contains(need)) {
    GIGAREG_REQUIRE(u.box().contains(shard.owned()), "u must contain the owned slab");
    u = rebox(u, need);
  }
  exchange_halo(shard.comm(), d, u, halo);
  gigareg::compose_fields(shard.ctx(), v, grid, u.view(), grid, out, shard.owned(),
                          Boundary::Border);
  return halo;
}

std::int64_t jacobian_determinant(const Shard& shard, Volume<float>& u, const Geometry& grid,
                                  VolumeView<float> det, Refresh refresh) {
  if (refresh != Refresh::None)
    exchange_halo(shard.comm(), shard.decomposition(), u, jacobian_halo());
  const Box owned = shard.owned();
  Scratch<double> p(std::size_t(owned.size.z), shard.ctx().memory_space());
  const SlicePartials partials = partials_of(p, owned.size.z, 1);
  gigareg::jacobian_determinant(shard.ctx(), u.view(), grid, det, owned, partials);
  return std::int64_t(reduce_slices(shard, partials)[0]);
}

}  // namespace gigareg::dist
