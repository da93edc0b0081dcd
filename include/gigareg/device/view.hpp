#pragma once
// VolumeView: the trivially copyable handle that kernels and the CPU reference receive.
//
// A view addresses a box of a global voxel grid. `box_lo` is the global index of the view's
// first element and `extent` its size; `global_size` is the size of the whole grid. For an
// unsharded volume box_lo = 0 and extent = global_size. A shard with halos is a view whose box is
// its owned slab grown by the halo (clipped to the grid). Ops address voxels by global index, so
// the same code computes a whole volume or one slab.
//
// Memory layout: x fastest, then y, then z (ITK and NIfTI order); a field of C components stores
// C contiguous component planes (all x, then all y, then all z): coalesced per-component loads
// and the order NIfTI vector images use on disk.

#include <type_traits>

#include "gigareg/device/math.hpp"

namespace gigareg {

/// A half-open box [lo, lo + size) of global voxel indices.
struct Box {
  Index3 lo{0, 0, 0};
  Index3 size{0, 0, 0};
  GIGAREG_HDI index_t voxel_count() const { return size.x * size.y * size.z; }
  GIGAREG_HDI Index3 hi() const { return {lo.x + size.x, lo.y + size.y, lo.z + size.z}; }
  GIGAREG_HDI bool contains(index_t i, index_t j, index_t k) const {
    return i >= lo.x && i < lo.x + size.x && j >= lo.y && j < lo.y + size.y && k >= lo.z &&
           k < lo.z + size.z;
  }
  GIGAREG_HDI bool contains(const Box& b) const {
    return b.lo.x >= lo.x && b.lo.y >= lo.y && b.lo.z >= lo.z && b.hi().x <= hi().x &&
           b.hi().y <= hi().y && b.hi().z <= hi().z;
  }
  GIGAREG_HDI bool empty() const { return size.x <= 0 || size.y <= 0 || size.z <= 0; }
  /// This box grown by r[a] voxels on both sides of each axis a, clipped to a grid of size
  /// `grid`: a shard with its halo, the inputs a windowed op reads around its outputs.
  GIGAREG_HDI Box grown_within(Index3 r, Index3 grid) const {
    Box out;
    for (int a = 0; a < 3; ++a) {
      const index_t first = lo[a] - r[a] > 0 ? lo[a] - r[a] : 0;
      const index_t end = lo[a] + size[a] + r[a] < grid[a] ? lo[a] + size[a] + r[a] : grid[a];
      out.lo[a] = first;
      out.size[a] = end - first;
    }
    return out;
  }
  GIGAREG_HDI bool operator==(const Box& o) const { return lo == o.lo && size == o.size; }
};

template <class T>
struct VolumeView {
  T* data = nullptr;
  Index3 extent{0, 0, 0};       // elements along x, y, z in this view's memory
  Index3 stride{0, 0, 0};       // element strides along x, y, z (stride.x is 1 for owned volumes)
  index_t component_stride = 0; // elements between component planes
  int components = 1;
  Index3 box_lo{0, 0, 0};       // global index of element (0, 0, 0)
  Index3 global_size{0, 0, 0};  // size of the global grid the box lives in

  GIGAREG_HDI Box box() const { return {box_lo, extent}; }
  GIGAREG_HDI index_t voxel_count() const { return extent.x * extent.y * extent.z; }

  /// Offset of a local index (relative to box_lo).
  GIGAREG_HDI index_t local_offset(index_t i, index_t j, index_t k) const {
    return i * stride.x + j * stride.y + k * stride.z;
  }
  GIGAREG_HDI T& local(index_t i, index_t j, index_t k, int c = 0) const {
    return data[c * component_stride + local_offset(i, j, k)];
  }
  /// Element at a global index; the index must lie inside box().
  GIGAREG_HDI T& at(index_t gi, index_t gj, index_t gk, int c = 0) const {
    return local(gi - box_lo.x, gj - box_lo.y, gk - box_lo.z, c);
  }

  /// The same memory as a view of const elements.
  GIGAREG_HDI VolumeView<const T> as_const() const {
    return {data, extent, stride, component_stride, components, box_lo, global_size};
  }
  /// Views of mutable elements convert implicitly to views of const elements.
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  GIGAREG_HDI operator VolumeView<const U>() const {
    return {data, extent, stride, component_stride, components, box_lo, global_size};
  }
};

static_assert(std::is_trivially_copyable_v<VolumeView<float>>, "views travel to kernels by value");

}  // namespace gigareg
