// The pipeline's Partition over a communicator.

#include "gigareg/distributed/partition.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "gigareg/distributed/decomposition.hpp"
#include "gigareg/distributed/halo.hpp"
#include "gigareg/error.hpp"

namespace gigareg::dist {
namespace {

bool whole_planes(const Box& b, Index3 grid) {
  return b.lo.x == 0 && b.lo.y == 0 && b.size.x == grid.x && b.size.y == grid.y;
}

/// Element offset of the z range [z0, z0 + n) of whole planes inside a volume with box `box`.
index_t plane_offset(const Box& box, index_t z0) { return (z0 - box.lo.z) * box.size.x * box.size.y; }

}  // namespace

ShardPartition::ShardPartition(Communicator& comm) : comm_(&comm) {}

ShardPartition::~ShardPartition() {
  for (int i = 0; i < 2; ++i)
    if (scratch_[i] != nullptr) free_bytes(scratch_[i], comm_->memory_space());
}

void* ShardPartition::scratch(int which, std::size_t bytes) const {
  if (scratch_bytes_[which] < bytes) {
    if (scratch_[which] != nullptr) free_bytes(scratch_[which], comm_->memory_space());
    scratch_[which] = nullptr;
    scratch_[which] = allocate_bytes(bytes, comm_->memory_space(), "partition scratch");
    scratch_bytes_[which] = bytes;
  }
  return scratch_[which];
}

Box ShardPartition::owned(Index3 grid_size) const {
  return Decomposition::slabs(grid_size, size()).owned(rank());
}

void ShardPartition::exchange_halos(const std::vector<Volume<float>*>& volumes, Index3 halo) const {
  for (Volume<float>* v : volumes) {
    if (v == nullptr || v->empty()) continue;
    const Decomposition d = Decomposition::slabs(v->geometry().size, size());
    bytes_sent_ += exchange_halo(*comm_, d, *v, halo).bytes_sent;
  }
}

Volume<float> ShardPartition::fetch(const Volume<float>& local, const Box& want) const {
  const char* op = "ShardPartition::fetch";
  const Index3 grid = local.geometry().size;
  const Decomposition d = Decomposition::slabs(grid, size());
  const int r = rank(), p = size();
  if (!local.box().contains(d.owned(r)) || !whole_planes(local.box(), grid))
    throw_error(ErrorKind::InvalidArgument, op, "the local volume must hold whole planes around the owned slab");
  if (!want.empty() && (!whole_planes(want, grid) || want.lo.z < 0 || want.lo.z + want.size.z > grid.z))
    throw_error(ErrorKind::InvalidArgument, op, "a fetched box must be whole x-y planes of the grid");
  if (local.space() != comm_->memory_space())
    throw_error(ErrorKind::InvalidArgument, op, "the volume is not in the communicator's memory");
  // Everyone's wanted z range (z0, nz), in rank order.
  std::int64_t mine[2] = {want.empty() ? 0 : want.lo.z, want.empty() ? 0 : want.size.z};
  std::vector<std::int64_t> ranges(std::size_t(2 * p));
  if (comm_->memory_space() == MemorySpace::Host) {
    comm_->allgather(mine, ranges.data(), sizeof mine);
  } else {
    auto* send = static_cast<std::int64_t*>(scratch(0, sizeof mine));
    auto* recv = static_cast<std::int64_t*>(scratch(1, ranges.size() * sizeof(std::int64_t)));
    copy_bytes(send, comm_->memory_space(), mine, MemorySpace::Host, sizeof mine);
    comm_->allgather(send, recv, sizeof mine);
    comm_->synchronize();
    copy_bytes(ranges.data(), MemorySpace::Host, recv, comm_->memory_space(),
               ranges.size() * sizeof(std::int64_t));
  }
  Volume<float> out;
  if (!want.empty()) out = Volume<float>(local.geometry(), want, local.components(), local.space());
  const index_t plane = grid.x * grid.y;
  const int comps = local.components();
  std::vector<Message> sends, recvs;
  const Box owned_r = d.owned(r);
  for (int q = 0; q < p; ++q) {
    const Box want_q{{0, 0, ranges[std::size_t(2 * q)]}, {grid.x, grid.y, ranges[std::size_t(2 * q + 1)]}};
    // My owned planes that q wants.
    const Box give = want_q.empty() ? Box{} : intersect(owned_r, want_q);
    // q's owned planes that I want.
    const Box take = want.empty() ? Box{} : intersect(d.owned(q), want);
    for (int c = 0; c < comps; ++c) {
      if (q == r) {
        if (!take.empty())
          copy_bytes(out.data() + index_t(c) * want.voxel_count() + plane_offset(want, take.lo.z),
                     out.space(),
                     local.data() + index_t(c) * local.box().voxel_count() + plane_offset(local.box(), take.lo.z),
                     local.space(), std::size_t(take.size.z * plane) * sizeof(float));
        continue;
      }
      if (!give.empty()) {
        const float* src = local.data() + index_t(c) * local.box().voxel_count() +
                           plane_offset(local.box(), give.lo.z);
        sends.push_back({q, const_cast<float*>(src), std::size_t(give.size.z * plane) * sizeof(float)});
        bytes_sent_ += std::uint64_t(give.size.z * plane) * sizeof(float);
      }
      if (!take.empty())
        recvs.push_back({q, out.data() + index_t(c) * want.voxel_count() + plane_offset(want, take.lo.z),
                         std::size_t(take.size.z * plane) * sizeof(float)});
    }
  }
  comm_->exchange(sends, recvs);
  return out;
}

void ShardPartition::gather_slices(const SlicePartials& local, index_t grid_z, SlicePartials global,
                                   MemorySpace space) const {
  const char* op = "ShardPartition::gather_slices";
  const Decomposition d = Decomposition::slabs({1, 1, grid_z}, size());
  if (local.slices != d.owned(rank()).size.z || global.slices != grid_z || local.terms != global.terms)
    throw_error(ErrorKind::InvalidArgument, op, "the partials do not match the slab decomposition");
  if (space != comm_->memory_space())
    throw_error(ErrorKind::InvalidArgument, op, "the partials are not in the communicator's memory");
  // Fixed-size blocks (the thickest slab, zero-padded) all-gathered, then the real slices
  // concatenated in rank order: global slice order.
  const std::size_t terms = std::size_t(local.terms);
  const std::size_t block = std::size_t(d.max_owned_slices()) * terms * sizeof(double);
  auto* send = static_cast<char*>(scratch(0, block));
  auto* recv = static_cast<char*>(scratch(1, block * std::size_t(size())));
  const std::size_t mine = std::size_t(local.slices) * terms * sizeof(double);
  if (mine > 0) copy_bytes(send, space, local.data, space, mine);
  comm_->allgather(send, recv, block);
  std::size_t at = 0;
  for (int q = 0; q < size(); ++q) {
    const std::size_t valid = std::size_t(d.owned(q).size.z) * terms * sizeof(double);
    if (valid > 0)
      copy_bytes(reinterpret_cast<char*>(global.data) + at, space, recv + std::size_t(q) * block, space, valid);
    at += valid;
  }
}

void ShardPartition::allreduce_sum(std::int64_t* data, std::size_t count) const {
  comm_->allreduce_sum(data, count);
}

std::vector<double> ShardPartition::gather_host_slices(const std::vector<double>& local,
                                                       index_t grid_z, int terms) const {
  const MemorySpace space = comm_->memory_space();
  const Decomposition d = Decomposition::slabs({1, 1, grid_z}, size());
  const index_t mine = d.owned(rank()).size.z;
  GIGAREG_REQUIRE(local.size() == std::size_t(mine) * std::size_t(terms), "host partials of the owned slices");
  std::vector<double> all(std::size_t(grid_z) * std::size_t(terms));
  if (space == MemorySpace::Host) {
    gather_slices({const_cast<double*>(local.data()), mine, terms}, grid_z, {all.data(), grid_z, terms}, space);
    return all;
  }
  // Device communicator: stage through device buffers.
  const std::size_t lb = std::max<std::size_t>(local.size(), 1) * sizeof(double);
  const std::size_t gb = std::max<std::size_t>(all.size(), 1) * sizeof(double);
  void* dl = allocate_bytes(lb, space, "host partials (device copy)");
  void* dg = allocate_bytes(gb, space, "gathered host partials (device copy)");
  try {
    if (!local.empty()) copy_bytes(dl, space, local.data(), MemorySpace::Host, local.size() * sizeof(double));
    gather_slices({static_cast<double*>(dl), mine, terms}, grid_z, {static_cast<double*>(dg), grid_z, terms}, space);
    comm_->synchronize();
    copy_bytes(all.data(), MemorySpace::Host, dg, space, all.size() * sizeof(double));
  } catch (...) {
    free_bytes(dl, space);
    free_bytes(dg, space);
    throw;
  }
  free_bytes(dl, space);
  free_bytes(dg, space);
  return all;
}

bool ShardPartition::all(bool value) const { return comm_->all(value); }

double ShardPartition::max(double value) const { return comm_->max(value); }
double ShardPartition::min(double value) const { return comm_->min(value); }

}  // namespace gigareg::dist
