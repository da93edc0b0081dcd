#pragma once
// Memory of the registration's stages in the backend's space: an owning array (reduction
// partials, device scalars), slice partials backed by one, and zero-filled volumes.

#include <cstddef>
#include <utility>

#include "gigareg/memory.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

inline Box whole(const Geometry& g) { return {{0, 0, 0}, g.size}; }

/// An array of T in host or device memory (reduction partials, device scalars). Move-only.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::size_t count, MemorySpace space, const char* what = "registration buffer")
      : space_(space), count_(count) {
    data_ = static_cast<T*>(allocate_bytes(count * sizeof(T), space, what));
  }
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
      space_ = o.space_;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() const { return data_; }
  std::size_t size() const { return count_; }

 private:
  void release() noexcept {
    if (data_) free_bytes(data_, space_);
    data_ = nullptr;
  }
  MemorySpace space_ = MemorySpace::Host;
  std::size_t count_ = 0;
  T* data_ = nullptr;
};

/// Slice partials backed by a Buffer.
struct Partials {
  Buffer<double> buffer;
  SlicePartials view;
  Partials() = default;
  Partials(index_t slices, int terms, MemorySpace space)
      : buffer(std::size_t(slices) * std::size_t(terms), space, "slice partials"),
        view{buffer.data(), slices, terms} {}
};

/// A zero-filled volume with box `box` of grid `g` in `space` (all-zero bytes are 0 for float
/// and for bfloat16), filled where it lives: no host copy of a device volume.
template <class T = float>
Volume<T> zeros(const Geometry& g, const Box& box, int components, MemorySpace space) {
  Volume<T> v(g, box, components, space);
  zero_bytes(v.data(), space, v.bytes());
  return v;
}
inline Volume<float> zeros(const Geometry& g, int components, MemorySpace space) {
  return zeros(g, whole(g), components, space);
}

}  // namespace gigareg::reg
