#pragma once
// Internals of the registration pipeline shared by its translation units: backend buffers, the
// images of one pyramid level, the stage metric, and the stage drivers.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/ops/loss.hpp"
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

/// A zero-filled volume in `space` (host fill, then a copy for the device).
Volume<float> zeros(const Geometry& g, int components, MemorySpace space);

/// A volume that is either borrowed (the full-resolution image at shrink 1 without smoothing)
/// or owned (a downsampled level).
struct LevelImage {
  Volume<float> owned;
  const Volume<float>* borrowed = nullptr;
  const Volume<float>& get() const { return borrowed ? *borrowed : owned; }
  bool present() const { return borrowed != nullptr || !owned.empty(); }
  VolumeView<const float> view() const {
    return present() ? get().view() : VolumeView<const float>{};
  }
};

/// The full-resolution inputs in the backend's memory (borrowed on the CPU).
struct Inputs {
  Context ctx;
  const Volume<float>* fixed = nullptr;
  const Volume<float>* moving = nullptr;
  const Volume<float>* fixed_mask = nullptr;   // may be null
  const Volume<float>* moving_mask = nullptr;  // may be null
};

/// The images of one pyramid level, in the backend's memory.
struct Level {
  Geometry fixed_geometry, moving_geometry;
  LevelImage fixed, moving, fixed_mask, moving_mask;
  double min_spacing = 1.0;  // smallest spacing of the fixed level grid (mm)
};

/// Level `lv` of a stage: blurs (the stage's sigma of the full-resolution grid, voxels or mm) and
/// shrinks every input. For CC, the fixed mask of the level also excludes the windows whose
/// fixed-image standard deviation is below cc_min_std of the fixed range (texture_mask).
Level make_level(const Inputs& in, const StageParams& stage, int lv);

/// 1 where the box window of `radius` around the voxel (clipped to the grid) has a standard
/// deviation of at least min_std_fraction of the image's range (within `mask` when given) and
/// `mask` (when given) is > 0.5; else 0. Host volumes; window sums in double.
Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, int radius,
                           double min_std_fraction);

/// The loss mask of an iteration: the fixed mask, times the moving mask sampled through the
/// current transform when there is one (recomputed by update()).
class MaskCombiner {
 public:
  MaskCombiner(const Context& ctx, const Level& level);
  /// The mask view to pass to the loss (empty view: no mask).
  VolumeView<const float> view() const;
  /// Refreshes the combination for T(x) = A(x + u(x)) (u may be empty).
  void update(const Affined& affine, VolumeView<const float> displacement);

 private:
  Context ctx_;
  const Level* level_;
  Volume<float> combined_;   // backend memory, when there is a moving mask
  Volume<float> sampled_;    // moving mask sampled into the fixed grid (backend)
};

/// The stage metric on one level: loss value S / C and dS/dW.
class Metric {
 public:
  Metric(const Context& ctx, const MetricParams& params, const Level& level);
  /// Launches the loss of `warped` against `fixed` (both on the level's fixed grid): partials,
  /// and dS/dW into `grad` when it has data. No synchronisation.
  void launch(VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, VolumeView<float> grad);
  /// The value of the last launch (synchronises with the device).
  LossValue value() const;

 private:
  Context ctx_;
  MetricParams params_;
  const Level* level_;
  Partials partials_;
  LnccParams lncc_;
  MattesParams mattes_;
};

/// The state the stages pass along.
struct PipelineState {
  Vec3d center{0, 0, 0};                 // the linear transform's centre (ITK fixed parameters)
  Affined affine = Affined::identity();  // physical fixed -> moving
  Volume<float> field;                   // backend memory, on `field_geometry` (empty: none)
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

/// Sigma in voxels of the full-resolution grid `g` for an ANTs sigma (mm or voxels).
Vec3d sigma_voxels(const Geometry& g, double sigma, bool in_mm);

/// The smallest spacing of a grid.
double min_spacing(const Geometry& g);

/// Formats a double for logs.
std::string fmt(double v, int precision = 6);

}  // namespace gigareg::reg
