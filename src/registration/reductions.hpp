#pragma once
// Reductions of the registration's stages over the processes of a partition: global intensity
// ranges and largest vector norms, and slice partials gathered into whole-grid order.

#include "gigareg/ops/context.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/volume.hpp"
#include "registration/buffers.hpp"

namespace gigareg::reg {

/// The global (masked) intensity range of `image` over the owned box; {0, 1} when empty.
IntensityRange global_range(const Context& ctx, const Partition& part, VolumeView<const float> image,
                            VolumeView<const float> mask, const Box& owned);

/// The global largest vector norm of a 3-component field over the owned boxes (synchronises).
double global_max_norm(const Context& ctx, const Partition& part, const Volume<float>& field,
                       const Box& owned);

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

}  // namespace gigareg::reg
