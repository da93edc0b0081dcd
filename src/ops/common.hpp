#pragma once
// Argument checks and small helpers shared by the op dispatchers in src/ops/ (internal).
#include <string>

#include "gigareg/config.hpp"
#include "gigareg/device/math.hpp"
#include "gigareg/error.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg::ops_detail {

[[noreturn]] inline void fail(const char* op, const std::string& what) {
  throw_error(ErrorKind::InvalidArgument, op, what);
}

[[noreturn]] inline void no_cuda(const char* op) {
  throw_error(ErrorKind::Cuda, op, "gigareg was built without CUDA");
}

/// "[x,y,z]+[nx x ny x nz]" for messages.
inline std::string describe(const Box& b) {
  return "[" + std::to_string(b.lo.x) + "," + std::to_string(b.lo.y) + "," + std::to_string(b.lo.z) +
         "]+[" + std::to_string(b.size.x) + "x" + std::to_string(b.size.y) + "x" +
         std::to_string(b.size.z) + "]";
}

/// `b` grown by r voxels on both sides of each axis, clipped to a grid of size `global`.
inline Box grow_clip(const Box& b, Index3 r, Index3 global) { return b.grown_within(r, global); }
inline Box grow_clip(const Box& b, index_t r, Index3 global) { return b.grown_within(Index3{r, r, r}, global); }

/// A view in ctx's memory with `components` components, on a grid of `grid` size, whose box lies
/// in the grid and contains `needed` (when given).
template <class T>
void check_view(const Context& ctx, const char* op, const char* name, const VolumeView<T>& v,
                int components, Index3 grid, const Box* needed) {
  require_backend_memory(ctx, op, v.data);
  if (v.components != components)
    fail(op, std::string(name) + " has " + std::to_string(v.components) + " components, expected " +
                 std::to_string(components));
  if (v.global_size != grid)
    fail(op, std::string(name) + " lives on a grid of a different size than its geometry");
  if (v.box().empty() || !Box{{0, 0, 0}, grid}.contains(v.box()))
    fail(op, std::string(name) + " box " + describe(v.box()) + " is empty or outside its grid");
  if (needed && !v.box().contains(*needed))
    fail(op, std::string(name) + " box " + describe(v.box()) + " does not contain " + describe(*needed));
}

/// Entries below 1e-9 in magnitude flushed to 0 when folding double maps into the float plans
/// of the kernels, so that an identity or an integer shift between agreeing grids stays exact.
inline float flushed(double x) { return (x < 0 ? -x : x) < 1e-9 ? 0.f : float(x); }
inline Vec3f to_float(Vec3d v) { return {flushed(v.x), flushed(v.y), flushed(v.z)}; }
inline Mat3f to_float(const Mat3d& m) {
  Mat3f r{};
  for (int i = 0; i < 9; ++i) r.m[i] = flushed(m.m[i]);
  return r;
}

}  // namespace gigareg::ops_detail
