#pragma once
// Volume<T>: owns a box of voxels of a global grid in host or device memory, with its Geometry.
// Scalar images have one component; displacement fields have three, stored as component planes
// (see device/view.hpp). A Volume is move-only: copies are explicit (clone, to).

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "gigareg/device/view.hpp"
#include "gigareg/error.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/memory.hpp"

namespace gigareg {

template <class T>
class Volume {
  static_assert(std::is_trivially_copyable_v<T>, "voxels are plain numbers");

 public:
  Volume() = default;

  /// Allocates the whole grid of `geometry` (uninitialised).
  explicit Volume(const Geometry& geometry, int components = 1,
                  MemorySpace space = MemorySpace::Host)
      : Volume(geometry, Box{{0, 0, 0}, geometry.size}, components, space) {}

  /// Allocates `box` of the global grid described by `global_geometry` (uninitialised).
  Volume(const Geometry& global_geometry, Box box, int components,
         MemorySpace space = MemorySpace::Host)
      : geometry_(global_geometry), box_(box), components_(components), space_(space) {
    GIGAREG_REQUIRE(components >= 1, "a volume needs at least one component");
    const Box grid{{0, 0, 0}, global_geometry.size};
    GIGAREG_REQUIRE(grid.contains(box) && !box.empty(), "the box must be a non-empty part of the grid");
    const std::size_t bytes = checked_bytes(box, components);
    owned_ = std::shared_ptr<void>(allocate_bytes(bytes, space, "Volume"),
                                   [space](void* p) { free_bytes(p, space); });
    data_ = static_cast<T*>(owned_.get());
  }

  /// A volume over memory someone else owns (an itk::Image buffer, a mapped file): no copy, and
  /// the memory must outlive the volume.
  static Volume wrap(T* data, const Geometry& geometry, int components = 1,
                     MemorySpace space = MemorySpace::Host) {
    Volume v;
    v.geometry_ = geometry;
    v.box_ = Box{{0, 0, 0}, geometry.size};
    v.components_ = components;
    v.space_ = space;
    v.data_ = data;
    return v;
  }

  Volume(Volume&&) noexcept = default;
  Volume& operator=(Volume&&) noexcept = default;
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;

  const Geometry& geometry() const { return geometry_; }
  const Box& box() const { return box_; }
  int components() const { return components_; }
  MemorySpace space() const { return space_; }
  bool empty() const { return data_ == nullptr; }
  bool owns_memory() const { return owned_ != nullptr; }
  /// Voxels in this volume's box (not the global grid).
  index_t voxel_count() const { return box_.voxel_count(); }
  index_t element_count() const { return voxel_count() * components_; }
  std::size_t bytes() const { return std::size_t(element_count()) * sizeof(T); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  /// Host-only element access by global index (tests, I/O, the CPU reference).
  T& operator()(index_t i, index_t j, index_t k, int c = 0) { return view().at(i, j, k, c); }
  const T& operator()(index_t i, index_t j, index_t k, int c = 0) const {
    return view().at(i, j, k, c);
  }

  VolumeView<T> view() {
    const Index3 e = box_.size;
    return {data_, e, {1, e.x, e.x * e.y}, box_.voxel_count(), components_, box_.lo, geometry_.size};
  }
  VolumeView<const T> view() const {
    const Index3 e = box_.size;
    return {data_, e, {1, e.x, e.x * e.y}, box_.voxel_count(), components_, box_.lo, geometry_.size};
  }

  /// A deep copy in `space`.
  Volume to(MemorySpace space) const {
    Volume out(geometry_, box_, components_, space);
    copy_bytes(out.data_, space, data_, space_, bytes());
    return out;
  }
  Volume clone() const { return to(space_); }

  /// Host volumes only: sets every element to `value`.
  void fill(T value) {
    GIGAREG_REQUIRE(space_ == MemorySpace::Host, "fill() is for host volumes");
    std::fill(data_, data_ + element_count(), value);
  }

 private:
  static std::size_t checked_bytes(const Box& box, int components) {
    const index_t n = box.voxel_count();  // each factor is bounded by a validated geometry
    if (n > index_t(~std::size_t(0) / sizeof(T)) / components)
      throw_error(ErrorKind::OutOfMemory, "Volume", "size overflows the address space");
    return std::size_t(n) * std::size_t(components) * sizeof(T);
  }

  Geometry geometry_{};
  Box box_{};
  int components_ = 1;
  MemorySpace space_ = MemorySpace::Host;
  std::shared_ptr<void> owned_;  // null when wrapping external memory
  T* data_ = nullptr;
};

using ScalarVolume = Volume<float>;
/// A displacement field: three component planes of physical displacements in mm (LPS).
using DisplacementField = Volume<float>;

}  // namespace gigareg
