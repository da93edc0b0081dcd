#pragma once
// Halo exchange, and moving shards between ranks (extract a shard from a whole volume, gather the
// owned shards to one rank).
//
// A rank holds each sharded array as a Volume whose box contains its owned box grown by the
// halo the ops on it need (Decomposition::halo_box). exchange_halos fills the halo voxels from
// the ranks that own them: for every pair of ranks (q, r) the block owned(q) ∩ halo_box(r, h) goes
// from q to r. With slabs that block is a range of whole x-y planes, i.e. one contiguous block
// per component plane in both volumes (no packing, sent straight from and into the volumes'
// memory), normally the h planes next to the face; a halo thicker than the neighbour's slab reads
// from the ranks beyond it. Every message of all volumes goes in one grouped exchange (MPI
// Isend/Irecv + Waitall, or one NCCL group of ncclSend/ncclRecv on the communicator's stream).
// Bytes per exchange: 2 faces x h x nx x ny x components x sizeof(T) for an interior rank,
// independent of the slab thickness.
//
// Every rank must call exchange_halos with the same halo and with volumes of the same element
// type and component count in the same order (the sizes of the messages are derived from the
// decomposition, so mismatched calls are caught as size errors by MPI, or hang in NCCL).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/distributed/decomposition.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::dist {

/// A sharded array as the exchange sees it: memory, box, component planes, element size.
struct HaloTarget {
  void* data = nullptr;
  Box box{};
  int components = 1;
  std::size_t element_bytes = 0;
  MemorySpace space = MemorySpace::Host;
};

template <class T>
HaloTarget halo_target(Volume<T>& v) {
  return {static_cast<void*>(v.data()), v.box(), v.components(), sizeof(T), v.space()};
}

struct HaloStats {
  std::uint64_t messages_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

/// Fills halo_box(rank, halo) \ owned(rank) of every target from its owners, in one grouped
/// exchange. Each target's box must contain halo_box(comm.rank(), halo); its memory must be in
/// comm.memory_space(). Slab decompositions only (InvalidArgument otherwise). On NCCL the
/// exchange is enqueued on the communicator's stream and not waited for.
HaloStats exchange_halos(Communicator& comm, const Decomposition& decomposition,
                         const std::vector<HaloTarget>& targets, Index3 halo);

template <class T>
HaloStats exchange_halo(Communicator& comm, const Decomposition& decomposition, Volume<T>& v,
                        Index3 halo) {
  return exchange_halos(comm, decomposition, {halo_target(v)}, halo);
}

/// The halo along z only: {0, 0, h} (x and y are whole in a slab).
inline Index3 z_halo(index_t h) { return {0, 0, h}; }

/// A copy of `box` of `source` in a new allocation in `source`'s memory space; `source` must
/// contain `box`. A rank's shard (box = halo_box) cut from a whole volume, or a shard regrown to a
/// larger halo (rebox). Host: any box; device: boxes of whole x-y planes.
template <class T>
Volume<T> extract_box(const Volume<T>& source, const Box& box);

/// A volume with box `box` holding the voxels of `source` where the two meet (the rest is
/// uninitialised): grows or shrinks a shard's halo.
template <class T>
Volume<T> rebox(const Volume<T>& source, const Box& box);

/// Gathers the owned boxes of every rank's `local` (which contains owned(rank); memory in
/// comm.memory_space()) into a whole volume on `root` (allocated there in comm.memory_space());
/// other ranks get an empty Volume. Point-to-point, one message per component per rank.
template <class T>
Volume<T> gather_to_root(Communicator& comm, const Decomposition& decomposition,
                         const Volume<T>& local, int root = 0);

}  // namespace gigareg::dist
