// The single-process partition, and what every partition shares.

#include "gigareg/partition.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "gigareg/error.hpp"

namespace gigareg {

Box Partition::halo_box(Index3 grid_size, Index3 halo) const {
  return owned(grid_size).grown_within(halo, grid_size);
}

std::vector<std::int64_t> Partition::gather_host_values(const std::vector<std::int64_t>& values) const {
  constexpr std::int64_t kExact = std::int64_t(1) << 53;
  std::vector<double> mine(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] <= -kExact || values[i] >= kExact)
      throw_error(ErrorKind::InvalidArgument, "Partition::gather_host_values",
                  std::to_string(values[i]) + " is beyond 2^53");
    mine[i] = double(values[i]);
  }
  // A grid of one slice per process: each owns exactly one slice (Decomposition::slabs).
  const std::vector<double> all = gather_host_slices(mine, index_t(size()), int(values.size()));
  std::vector<std::int64_t> out(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) out[i] = std::int64_t(all[i]);
  return out;
}

namespace {

/// A copy of box `want` of `v` (which contains it), in v's memory, one component plane at a time
/// and one x-y plane run at a time (contiguous when the boxes share their x-y extent).
Volume<float> crop(const Volume<float>& v, const Box& want) {
  GIGAREG_REQUIRE(v.box().contains(want), "the requested box is outside the local volume");
  Volume<float> out(v.geometry(), want, v.components(), v.space());
  const Box& b = v.box();
  const bool planes = want.lo.x == b.lo.x && want.lo.y == b.lo.y && want.size.x == b.size.x &&
                      want.size.y == b.size.y;
  for (int c = 0; c < v.components(); ++c) {
    const float* src = v.data() + index_t(c) * b.voxel_count();
    float* dst = out.data() + index_t(c) * want.voxel_count();
    if (planes) {
      const index_t off = (want.lo.z - b.lo.z) * b.size.x * b.size.y;
      copy_bytes(dst, v.space(), src + off, v.space(), std::size_t(want.voxel_count()) * sizeof(float));
      continue;
    }
    for (index_t k = 0; k < want.size.z; ++k)
      for (index_t j = 0; j < want.size.y; ++j) {
        const index_t s = (want.lo.x - b.lo.x) +
                          b.size.x * ((want.lo.y + j - b.lo.y) + b.size.y * (want.lo.z + k - b.lo.z));
        const index_t d = want.size.x * (j + want.size.y * k);
        copy_bytes(dst + d, v.space(), src + s, v.space(), std::size_t(want.size.x) * sizeof(float));
      }
  }
  return out;
}

class SingleProcess final : public Partition {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Box owned(Index3 grid_size) const override { return {{0, 0, 0}, grid_size}; }
  void exchange_halos(const std::vector<Volume<float>*>&, Index3) const override {}
  Volume<float> fetch(const Volume<float>& local, const Box& want) const override {
    if (want.empty()) return {};
    if (local.box() == want) return local.clone();
    return crop(local, want);
  }
  void gather_slices(const SlicePartials& local, index_t grid_z, SlicePartials global,
                     MemorySpace space) const override {
    GIGAREG_REQUIRE(local.slices == grid_z && global.slices == grid_z && local.terms == global.terms,
                    "the partials must cover the grid's slices");
    if (local.data != global.data && grid_z > 0)
      copy_bytes(global.data, space, local.data, space,
                 std::size_t(grid_z) * std::size_t(local.terms) * sizeof(double));
  }
  std::vector<double> gather_host_slices(const std::vector<double>& local, index_t,
                                         int) const override {
    return local;
  }
  void allreduce_sum(std::int64_t*, std::size_t) const override {}
  double max(double value) const override { return value; }
  double min(double value) const override { return value; }
  bool all(bool value) const override { return value; }
};

}  // namespace

const Partition& single_process() {
  static const SingleProcess p;
  return p;
}

}  // namespace gigareg
