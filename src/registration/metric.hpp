#pragma once
// The stage metric on one level (CC, Mattes MI or mean squares) over the processes of a
// partition.

#include <cstdint>

#include "gigareg/ops/context.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/volume.hpp"
#include "registration/buffers.hpp"

namespace gigareg::reg {

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

/// The LNCC window of a CC metric (box of the metric's radius, exact gradient): what the metric
/// computes with and what its halos are derived from (halos.cpp).
LnccParams cc_window(const MetricParams& params);

}  // namespace gigareg::reg
