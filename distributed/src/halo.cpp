// Halo exchange of slab shards, and moving shards between ranks.

#include "gigareg/distributed/halo.hpp"

#include <cstdint>
#include <string>

#include "gigareg/error.hpp"

namespace gigareg::dist {
namespace {

std::string box_str(const Box& b) {
  return "[" + std::to_string(b.lo.x) + "," + std::to_string(b.lo.y) + "," + std::to_string(b.lo.z) +
         " + " + std::to_string(b.size.x) + "x" + std::to_string(b.size.y) + "x" +
         std::to_string(b.size.z) + "]";
}

/// Element offset of `part` inside a volume with box `whole` when `part` is a range of whole x-y
/// planes of it (then each component's part is one contiguous block of part.voxel_count()).
bool plane_offset(const Box& whole, const Box& part, index_t& offset) {
  if (!whole.contains(part) || part.lo.x != whole.lo.x || part.lo.y != whole.lo.y ||
      part.size.x != whole.size.x || part.size.y != whole.size.y)
    return false;
  offset = (part.lo.z - whole.lo.z) * whole.size.x * whole.size.y;
  return true;
}

void require_slabs(const Communicator& comm, const Decomposition& d, const char* op) {
  if (d.ranks() != comm.size())
    throw_error(ErrorKind::InvalidArgument, op,
                "the decomposition has " + std::to_string(d.ranks()) + " ranks, the communicator " +
                    std::to_string(comm.size()));
  if (!d.is_slabs())
    throw_error(ErrorKind::InvalidArgument, op,
                "only z-slab decompositions are supported so far (3-D blocks need face packing)");
}

/// Messages for `part` of a target: one per component (contiguous component planes).
void add_messages(std::vector<Message>& list, const HaloTarget& t, const Box& part, int peer,
                  const char* op) {
  index_t offset = 0;
  if (!plane_offset(t.box, part, offset))
    throw_error(ErrorKind::Internal, op, "block " + box_str(part) + " is not whole planes of " +
                                             box_str(t.box));
  const std::size_t bytes = std::size_t(part.voxel_count()) * t.element_bytes;
  auto* base = static_cast<char*>(t.data);
  for (int c = 0; c < t.components; ++c) {
    const index_t element = index_t(c) * t.box.voxel_count() + offset;
    list.push_back({peer, base + std::size_t(element) * t.element_bytes, bytes});
  }
}

}  // namespace

HaloStats exchange_halos(Communicator& comm, const Decomposition& d,
                         const std::vector<HaloTarget>& targets, Index3 halo) {
  const char* op = "exchange_halos";
  require_slabs(comm, d, op);
  const int r = comm.rank(), p = comm.size();
  const Box mine = d.halo_box(r, halo);
  for (const HaloTarget& t : targets) {
    if (t.data == nullptr || t.components < 1 || t.element_bytes == 0)
      throw_error(ErrorKind::InvalidArgument, op, "an empty target");
    if (t.space != comm.memory_space())
      throw_error(ErrorKind::InvalidArgument, op,
                  std::string("a target is in ") + to_string(t.space) + " memory, the " +
                      to_string(comm.backend()) + " communicator needs " + to_string(comm.memory_space()));
    if (!t.box.contains(mine))
      throw_error(ErrorKind::InvalidArgument, op,
                  "a target's box " + box_str(t.box) + " does not contain the halo box " +
                      box_str(mine) + " of rank " + std::to_string(r));
  }
  std::vector<Message> sends, recvs;
  HaloStats stats;
  const Box owned = d.owned(r);
  for (const HaloTarget& t : targets)
    for (int q = 0; q < p; ++q) {
      if (q == r) continue;
      const Box in = intersect(d.owned(q), mine);                 // q's voxels in my halo
      if (!in.empty()) {
        add_messages(recvs, t, in, q, op);
        stats.bytes_received += std::uint64_t(in.voxel_count()) * t.components * t.element_bytes;
      }
      const Box out = intersect(owned, d.halo_box(q, halo));     // my voxels in q's halo
      if (!out.empty()) {
        add_messages(sends, t, out, q, op);
        stats.messages_sent += std::uint64_t(t.components);
        stats.bytes_sent += std::uint64_t(out.voxel_count()) * t.components * t.element_bytes;
      }
    }
  comm.exchange(sends, recvs);
  return stats;
}

template <class T>
Volume<T> extract_box(const Volume<T>& source, const Box& box) {
  GIGAREG_REQUIRE(source.box().contains(box) && !box.empty(),
                  "the box must be a non-empty part of the source volume");
  Volume<T> out(source.geometry(), box, source.components(), source.space());
  index_t offset = 0;
  if (plane_offset(source.box(), box, offset)) {
    for (int c = 0; c < source.components(); ++c)
      copy_bytes(out.data() + index_t(c) * box.voxel_count(), out.space(),
                 source.data() + index_t(c) * source.voxel_count() + offset, source.space(),
                 std::size_t(box.voxel_count()) * sizeof(T));
    return out;
  }
  GIGAREG_REQUIRE(source.space() == MemorySpace::Host,
                  "device volumes: the box must be whole x-y planes of the source");
  for (int c = 0; c < source.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) out(i, j, k, c) = source(i, j, k, c);
  return out;
}

template <class T>
Volume<T> rebox(const Volume<T>& source, const Box& box) {
  Volume<T> out(source.geometry(), box, source.components(), source.space());
  const Box common = intersect(source.box(), box);
  if (common.empty()) return out;
  index_t from = 0, to = 0;
  if (plane_offset(source.box(), common, from) && plane_offset(box, common, to)) {
    for (int c = 0; c < source.components(); ++c)
      copy_bytes(out.data() + index_t(c) * box.voxel_count() + to, out.space(),
                 source.data() + index_t(c) * source.voxel_count() + from, source.space(),
                 std::size_t(common.voxel_count()) * sizeof(T));
    return out;
  }
  GIGAREG_REQUIRE(source.space() == MemorySpace::Host,
                  "device volumes: both boxes must be whole x-y planes of the grid");
  for (int c = 0; c < source.components(); ++c)
    for (index_t k = common.lo.z; k < common.hi().z; ++k)
      for (index_t j = common.lo.y; j < common.hi().y; ++j)
        for (index_t i = common.lo.x; i < common.hi().x; ++i) out(i, j, k, c) = source(i, j, k, c);
  return out;
}

template <class T>
Volume<T> gather_to_root(Communicator& comm, const Decomposition& d, const Volume<T>& local,
                         int root) {
  const char* op = "gather_to_root";
  require_slabs(comm, d, op);
  GIGAREG_REQUIRE(root >= 0 && root < comm.size(), "root is not a rank");
  GIGAREG_REQUIRE(local.space() == comm.memory_space(), "local must be in the communicator's memory");
  const int r = comm.rank();
  GIGAREG_REQUIRE(local.box().contains(d.owned(r)), "local must contain the owned box");
  GIGAREG_REQUIRE(local.geometry().size == d.global_size(), "local is not on the decomposed grid");
  const auto source = const_cast<T*>(local.data());  // sent, never written
  const HaloTarget src{source, local.box(), local.components(), sizeof(T), local.space()};
  std::vector<Message> sends, recvs;
  Volume<T> whole;
  if (r == root) {
    whole = Volume<T>(local.geometry(), local.components(), comm.memory_space());
    const HaloTarget dst = halo_target(whole);
    for (int q = 0; q < comm.size(); ++q) {
      if (q == r) continue;
      add_messages(recvs, dst, d.owned(q), q, op);
    }
    const Box own = d.owned(r);
    index_t from = 0, to = 0;
    GIGAREG_ASSERT(plane_offset(local.box(), own, from) && plane_offset(whole.box(), own, to));
    for (int c = 0; c < local.components(); ++c)
      copy_bytes(whole.data() + index_t(c) * whole.voxel_count() + to, whole.space(),
                 local.data() + index_t(c) * local.voxel_count() + from, local.space(),
                 std::size_t(own.voxel_count()) * sizeof(T));
  } else {
    add_messages(sends, src, d.owned(r), root, op);
  }
  comm.exchange(sends, recvs);
  comm.synchronize();
  return whole;
}

#define GIGAREG_DIST_INSTANTIATE(T)                                                           \
  template Volume<T> extract_box<T>(const Volume<T>&, const Box&);                            \
  template Volume<T> rebox<T>(const Volume<T>&, const Box&);                                  \
  template Volume<T> gather_to_root<T>(Communicator&, const Decomposition&, const Volume<T>&, int);
GIGAREG_DIST_INSTANTIATE(float)
GIGAREG_DIST_INSTANTIATE(double)
GIGAREG_DIST_INSTANTIATE(std::int64_t)
#undef GIGAREG_DIST_INSTANTIATE

}  // namespace gigareg::dist
