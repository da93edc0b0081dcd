#pragma once
// Internals of the registration pipeline shared by its translation units: backend buffers, the
// images of one pyramid level, the stage metric, and the stage drivers.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/registration.hpp"
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

/// A volume that is either borrowed (the full-resolution host image at shrink 1 without
/// smoothing, on the CPU backend) or owned (a level image on a box of the level grid).
struct LevelImage {
  Volume<float> owned;
  const Volume<float>* borrowed = nullptr;
  const Volume<float>& get() const { return borrowed ? *borrowed : owned; }
  bool present() const { return borrowed != nullptr || !owned.empty(); }
  VolumeView<const float> view() const {
    return present() ? get().view() : VolumeView<const float>{};
  }
};

/// The full-resolution inputs in the backend's memory, the backend and the partition of the grids.
/// One process: the whole images. Several: each holds the planes of the fixed image (and mask)
/// that its level slabs need (registration_input_planes) and its own slab of planes of the
/// moving image (and mask); the moving windows fetch the planes they need from their owners.
struct Inputs {
  Context ctx;
  const Partition* part = nullptr;
  const Volume<float>* fixed = nullptr;
  const Volume<float>* moving = nullptr;
  const Volume<float>* fixed_mask = nullptr;   // may be null
  const Volume<float>* moving_mask = nullptr;  // may be null
};

/// The whole x-y planes of the full-resolution grid `fine` that the level image on `box` of
/// `level_geometry` reads (blur radius and linear taps included).
Box source_planes(const Geometry& fine, const Geometry& level_geometry, const Box& box, Vec3d sigma);

/// Level image of the full-resolution `source` (backend memory, holding source_planes) on `box`
/// of `level_geometry`: blurred by sigma (voxels of the full grid) and resampled, or borrowed
/// when the level is the full grid without blur.
LevelImage level_image(const Context& ctx, const Volume<float>* source, const Geometry& level_geometry,
                       const Box& box, Vec3d sigma);

/// The moving image (and mask) of one level on a window of its grid: the part that the fixed
/// slab of this process maps into under T(x) = A(x + u(x)) with |u| <= bound. With one process
/// the window is the whole grid. cover() rebuilds the window whenever the transform outgrows it,
/// with a margin, so the warp never samples outside it; the full-resolution planes it needs come
/// from the processes that own them (cover is collective: every process calls it, and all join
/// the fetch when one needs a new window). The result does not depend on the window, only the
/// work and the communication do: per rebuild about the window's planes, never per iteration.
class MovingWindow {
 public:
  MovingWindow(const Inputs& in, const Geometry& fixed_level, const Box& fixed_owned,
               const Geometry& moving_level, Vec3d sigma);
  /// True when the window holds every sample (and its linear taps) of the owned fixed voxels.
  bool covers(const Affined& affine, double bound_mm) const;
  /// Makes the window cover the transform (rebuilding it with a margin when it does not).
  /// Collective.
  void cover(const Affined& affine, double bound_mm);
  const LevelImage& image() const { return image_; }
  const LevelImage& mask() const { return mask_; }
  /// Whether there is a moving mask (its window is built with the image's).
  bool has_mask() const { return in_->moving_mask != nullptr; }
  const Geometry& geometry() const { return moving_level_; }
  Box box() const { return box_; }
  int rebuilds() const { return rebuilds_; }

 private:
  Box needed(const Affined& affine, double bound_mm) const;
  void build(const Box& box);
  void serve();  // another process rebuilds: send it this process's planes

  const Inputs* in_;
  Geometry fixed_level_, moving_level_;
  Box fixed_owned_;
  Vec3d sigma_;
  Box box_{};
  Volume<float> source_, mask_source_;  // fetched full-resolution planes (several processes)
  LevelImage image_, mask_;
  int rebuilds_ = 0;
};

/// The images of one pyramid level on this process: the fixed image and mask on the owned box of
/// the level grid grown by the metric's halos, the moving image in a window.
struct Level {
  Geometry fixed_geometry;
  Box owned{};               // of the fixed level grid
  Index3 image_halo{0, 0, 0}, mask_halo{0, 0, 0};  // the metric's halos of fixed/warped, mask
  LevelImage fixed, fixed_mask;
  std::unique_ptr<MovingWindow> moving;
  IntensityRange fixed_range{0, 1}, moving_range{0, 1};  // global
  double min_spacing = 1.0;  // smallest spacing of the fixed level grid (mm)
  const Geometry& moving_geometry() const { return moving->geometry(); }
};

/// Level `lv` of a stage: blurs (the stage's sigma of the full-resolution grid, voxels or mm) and
/// shrinks every input on the boxes this process needs. For CC, the fixed mask of the level also
/// excludes the windows whose fixed-image standard deviation is below cc_min_std of the fixed
/// range (texture_mask). The ranges are global.
Level make_level(const Inputs& in, const StageParams& stage, int lv);

/// The halos of the fixed and warped images, and of the mask, that a metric reads around the
/// owned box.
Index3 metric_image_halo(const MetricParams& m);
Index3 metric_mask_halo(const MetricParams& m);

/// On `out_box` of the image's grid: 1 where the box window of `radius` around the voxel (clipped
/// to the grid) has a variance of at least `min_variance` and `mask` (when given) is > 0.5; else
/// 0. Host volumes; `image` contains out_box grown by the radius (clipped); window sums in double,
/// by separable passes, so every voxel's value is independent of out_box.
Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, const Box& out_box,
                           int radius, double min_variance);
/// texture_mask in the context's backend: the CUDA kernel gives the host's mask bit for bit
/// (tests/cuda/test_texture_mask_cuda.cpp); the result is in the backend's memory.
Volume<float> texture_mask(const Context& ctx, const Volume<float>& image, const Volume<float>* mask,
                           const Box& out_box, int radius, double min_variance);

/// The halo a field on `g` needs to be sampled at x + d(x), |d| <= bound_mm: per axis, the
/// bound in voxels of that axis (rounded up, with a relative margin for float rounding) and one
/// voxel for the upper linear tap.
Index3 displacement_halo(const Geometry& g, double bound_mm);

/// The global (masked) intensity range of `image` over the owned box; {0, 1} when empty.
IntensityRange global_range(const Context& ctx, const Partition& part, VolumeView<const float> image,
                            VolumeView<const float> mask, const Box& owned);

/// The global largest vector norm of a 3-component field over the owned boxes (synchronises).
double global_max_norm(const Context& ctx, const Partition& part, const Volume<float>& field,
                       const Box& owned);

/// The loss mask of an iteration on the owned box (with the metric's mask halo, exchanged): the
/// fixed mask, times the moving mask sampled through the current transform when there is one
/// (recomputed by update()).
class MaskCombiner {
 public:
  MaskCombiner(const Context& ctx, const Partition& part, const Geometry& fixed_geometry,
               const Box& owned, Index3 mask_halo, const LevelImage* fixed_mask,
               const MovingWindow* moving);
  /// The mask view to pass to the loss (empty view: no mask).
  VolumeView<const float> view() const;
  /// Refreshes the combination for T(x) = A(x + u(x)) (u may be empty).
  void update(const Affined& affine, VolumeView<const float> displacement);

 private:
  Context ctx_;
  const Partition* part_;
  Geometry grid_;
  Box owned_;
  Index3 halo_;
  const LevelImage* fixed_mask_;
  const MovingWindow* moving_;
  Volume<float> combined_;   // backend memory, when there is a moving mask
  Volume<float> sampled_;    // moving mask sampled into the fixed grid (backend, owned)
};

/// The stage metric on one level: loss value S / C and dS/dW on the owned box.
class Metric {
 public:
  Metric(const Context& ctx, const Partition& part, const MetricParams& params,
         const Geometry& fixed_geometry, const Box& owned, IntensityRange fixed_range,
         IntensityRange moving_range);
  /// Launches the loss of `warped` against `fixed` (both on the level's fixed grid, boxes with
  /// metric_image_halo; the halo of `warped` is exchanged here): partials, and dS/dW into `grad`
  /// when it has data. No synchronisation on one process.
  void launch(VolumeView<const float> fixed, Volume<float>& warped, VolumeView<const float> mask,
              VolumeView<float> grad);
  /// The global value of the last launch (synchronises with the device).
  LossValue value() const;

 private:
  Context ctx_;
  const Partition* part_;
  MetricParams params_;
  Geometry grid_;
  Box owned_;
  Partials local_, global_;
  LnccParams lncc_;
  MattesParams mattes_;
  Buffer<std::int64_t> histogram_;
  Buffer<float> table_;
};

/// Slice partials of the owned box gathered into whole-grid partials (global slice order).
class GatheredPartials {
 public:
  GatheredPartials(const Context& ctx, const Partition& part, const Geometry& grid,
                   const Box& owned, int terms);
  SlicePartials local() const { return local_.view; }
  /// Gathers (collective) and returns the whole-grid partials.
  SlicePartials gather();

 private:
  const Partition* part_;
  MemorySpace space_;
  index_t grid_z_;
  Partials local_, global_;
};

/// The state the stages pass along.
struct PipelineState {
  Vec3d center{0, 0, 0};                 // the linear transform's centre (ITK fixed parameters)
  Affined affine = Affined::identity();  // physical fixed -> moving
  Volume<float> field;                   // backend memory, on `field_geometry`, box contains the
                                         // owned box of that grid (empty: none)
  Geometry field_geometry;
  Volume<float> inverse_field;           // SyN keeps its own inverse estimate (else empty)
};

/// Runs one stage (all its levels); appends to `reports`.
void run_linear_stage(const Inputs& in, const StageParams& stage, int stage_index,
                      const RegistrationParams& params, PipelineState& state,
                      std::vector<LevelReport>& reports);
void run_deformable_stage(const Inputs& in, const StageParams& stage, int stage_index,
                          const RegistrationParams& params, PipelineState& state,
                          std::vector<LevelReport>& reports);

/// "stage S level L" (1-based) for messages.
std::string level_name(int stage_index, int lv);

/// Records one iteration's loss in `report` and the monitor, calls the progress callback and logs
/// it; throws when no voxel counts or the loss is not finite. Returns true when the level has
/// converged.
bool record(const LossValue& loss, int it, int lv, int levels, int stage_index,
            const StageParams& stage, const RegistrationParams& params,
            ConvergenceMonitor& monitor, LevelReport& report);

/// Sets the level's time (since t0), logs its summary and appends it to `reports`.
void finish_level(LevelReport& report, const StageParams& stage, int stage_index, int lv,
                  int levels, std::chrono::steady_clock::time_point t0,
                  std::vector<LevelReport>& reports);

/// Sigma in voxels of the full-resolution grid `g` for an ANTs sigma (mm or voxels).
Vec3d sigma_voxels(const Geometry& g, double sigma, bool in_mm);

/// The smallest spacing of a grid.
double min_spacing(const Geometry& g);

/// Formats a double for logs.
std::string fmt(double v, int precision = 6);

}  // namespace gigareg::reg
