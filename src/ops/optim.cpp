// Optimiser ops: argument checks, Adam constants, dispatch.

#include "gigareg/ops/optim.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/optim.hpp"
#endif

namespace gigareg {
namespace cpu {
void adam_moments(VolumeView<const float> grad, VolumeView<float> m, VolumeView<float> v,
                  const AdamCoefficients& c, const Box& owned);
void adam_step(VolumeView<const float> m, VolumeView<const float> v, VolumeView<float> step,
               const AdamCoefficients& c, const Box& owned);
template <class M>
void adam_update(VolumeView<const float> grad, VolumeView<M> m, VolumeView<M> v,
                 VolumeView<float> out, const AdamCoefficients& c, const Box& owned, bool add,
                 const double* scale);
void scale_field(VolumeView<float> field, const double* scale, const Box& owned);
void max_norm_partials(VolumeView<const float> field, const Box& owned, double* partials);
void reduce_max(const double* partials, index_t slices, double* result, bool as_scale,
                double target, double floor);
}  // namespace cpu

namespace {

#if GIGAREG_WITH_CUDA
#define GIGAREG_OPTIM_DISPATCH(op, ...)            \
  do {                                             \
    if (ctx.backend == Backend::Cpu)               \
      cpu::op(__VA_ARGS__);                        \
    else                                           \
      cuda::op(ctx.stream, __VA_ARGS__);           \
  } while (0)
#else
#define GIGAREG_OPTIM_DISPATCH(op, ...)                                              \
  do {                                                                               \
    if (ctx.backend == Backend::Cpu)                                                 \
      cpu::op(__VA_ARGS__);                                                          \
    else                                                                             \
      throw_error(ErrorKind::Cuda, #op, "gigareg was built without CUDA");           \
  } while (0)
#endif

/// Shared checks of the element-wise ops: same grid and components, views contain `owned`,
/// memory in the backend's space. Returns false when there is nothing to do.
template <class... Views>
bool check_elementwise(const Context& ctx, const char* op, const Box& owned, const Views&... views) {
  const auto& first = std::get<0>(std::forward_as_tuple(views...));
  const Box grid{{0, 0, 0}, first.global_size};
  if (!grid.contains(owned))
    throw_error(ErrorKind::InvalidArgument, op, "the owned box must lie in the global grid");
  const bool ok = ((views.global_size == first.global_size && views.components == first.components) && ...);
  if (!ok)
    throw_error(ErrorKind::InvalidArgument, op,
                "all views must share the global grid and the number of components");
  if (owned.empty()) return false;
  if (!(views.box().contains(owned) && ...))
    throw_error(ErrorKind::InvalidArgument, op, "every view must contain the owned box");
  (require_backend_memory(ctx, op, views.data), ...);
  return true;
}

bool finite(double x) { return std::isfinite(x); }

void check_partials(const Context& ctx, const char* op, const SlicePartials& p) {
  if (p.terms != 1) throw_error(ErrorKind::InvalidArgument, op, "max partials have one term");
  if (p.slices < 0) throw_error(ErrorKind::InvalidArgument, op, "negative slice count");
  if (p.slices > 0) require_backend_memory(ctx, op, p.data);
}

}  // namespace

AdamCoefficients adam_coefficients(const AdamParams& p) {
  GIGAREG_REQUIRE(finite(p.learning_rate) && p.learning_rate > 0.0, "learning rate must be > 0");
  GIGAREG_REQUIRE(finite(p.beta1) && p.beta1 >= 0.0 && p.beta1 < 1.0, "beta1 must be in [0, 1)");
  GIGAREG_REQUIRE(finite(p.beta2) && p.beta2 >= 0.0 && p.beta2 < 1.0, "beta2 must be in [0, 1)");
  GIGAREG_REQUIRE(finite(p.eps) && p.eps >= 0.0, "eps must be >= 0");
  GIGAREG_REQUIRE(p.step >= 1, "the Adam step count t starts at 1");
  const double bias1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double bias2 = 1.0 - std::pow(p.beta2, double(p.step));
  AdamCoefficients c{};
  c.beta1 = float(p.beta1);
  c.one_minus_beta1 = float(1.0 - p.beta1);
  c.beta2 = float(p.beta2);
  c.one_minus_beta2 = float(1.0 - p.beta2);
  c.step_size = float(p.learning_rate / bias1);
  c.inv_bias2 = float(1.0 / bias2);
  c.eps = float(p.eps);
  return c;
}

void adam_moments(const Context& ctx, VolumeView<const float> grad, VolumeView<float> m,
                  VolumeView<float> v, const AdamParams& params, const Box& owned) {
  const AdamCoefficients c = adam_coefficients(params);
  if (!check_elementwise(ctx, "adam_moments", owned, grad, m, v)) return;
  GIGAREG_OPTIM_DISPATCH(adam_moments, grad, m, v, c, owned);
}

void adam_step(const Context& ctx, VolumeView<const float> m, VolumeView<const float> v,
               VolumeView<float> step, const AdamParams& params, const Box& owned) {
  const AdamCoefficients c = adam_coefficients(params);
  if (!check_elementwise(ctx, "adam_step", owned, m, v, step)) return;
  GIGAREG_OPTIM_DISPATCH(adam_step, m, v, step, c, owned);
}

namespace {

template <class M>
void run_adam_update(const Context& ctx, VolumeView<const float> grad, VolumeView<M> m,
                     VolumeView<M> v, VolumeView<float> out, const AdamParams& params,
                     const Box& owned, StepOutput mode, const double* device_scale) {
  const AdamCoefficients c = adam_coefficients(params);
  const char* op = "adam_update";
  if (!check_elementwise(ctx, op, owned, grad, m, v, out)) return;
  const void* o = out.data;
  GIGAREG_REQUIRE(o != static_cast<const void*>(m.data) && o != static_cast<const void*>(v.data),
                  "the step output may not alias the moments");
  GIGAREG_REQUIRE(o != static_cast<const void*>(grad.data) ||
                      (out.box() == grad.box() && out.stride == grad.stride &&
                       out.component_stride == grad.component_stride),
                  "an output in the gradient's memory must be the same view of it");
  if (device_scale != nullptr) require_backend_memory(ctx, op, device_scale);
  GIGAREG_OPTIM_DISPATCH(adam_update, grad, m, v, out, c, owned, mode == StepOutput::Add,
                         device_scale);
}

}  // namespace

void adam_update(const Context& ctx, VolumeView<const float> grad, VolumeView<float> m,
                 VolumeView<float> v, VolumeView<float> out, const AdamParams& params,
                 const Box& owned, StepOutput mode, const double* device_scale) {
  run_adam_update(ctx, grad, m, v, out, params, owned, mode, device_scale);
}

void adam_update(const Context& ctx, VolumeView<const float> grad, VolumeView<bfloat16> m,
                 VolumeView<bfloat16> v, VolumeView<float> out, const AdamParams& params,
                 const Box& owned, StepOutput mode, const double* device_scale) {
  GIGAREG_REQUIRE(params.beta1 <= kBfloat16MaxBeta && params.beta2 <= kBfloat16MaxBeta,
                  "bfloat16 Adam moments need beta1, beta2 <= " + std::to_string(kBfloat16MaxBeta) +
                      " (a smaller per-step change is lost to rounding); use float moments");
  run_adam_update(ctx, grad, m, v, out, params, owned, mode, device_scale);
}

void scale_field(const Context& ctx, VolumeView<float> field, const double* device_scale,
                 const Box& owned) {
  if (!check_elementwise(ctx, "scale_field", owned, field)) return;
  require_backend_memory(ctx, "scale_field", device_scale);
  GIGAREG_OPTIM_DISPATCH(scale_field, field, device_scale, owned);
}

void max_norm_partials(const Context& ctx, VolumeView<const float> field, const Box& owned,
                       SlicePartials partials) {
  GIGAREG_REQUIRE(field.components == 3, "the max-norm is of a 3-component field");
  check_partials(ctx, "max_norm_partials", partials);
  GIGAREG_REQUIRE(partials.slices == owned.size.z, "one partial per z slice of the owned box");
  if (!check_elementwise(ctx, "max_norm_partials", owned, field)) return;
  GIGAREG_OPTIM_DISPATCH(max_norm_partials, field, owned, partials.data);
}

double reduce_slices_max(const Context& ctx, const SlicePartials& partials) {
  check_partials(ctx, "reduce_slices_max", partials);
  // reduce_slices copies the partials to the host (syncing the stream) and sums them; here the
  // copy is the same and the combination a max in slice order.
  std::vector<double> host(std::size_t(partials.slices));
  if (partials.slices > 0) {
    if (ctx.backend == Backend::Cpu) {
      std::copy(partials.data, partials.data + partials.slices, host.begin());
    } else {
      // Each slice as a one-term partial of a single-slice reduction: reduce_slices does the
      // device-to-host copy and the stream sync.
      const std::vector<double> all =
          reduce_slices(ctx, SlicePartials{partials.data, 1, int(partials.slices)});
      host.assign(all.begin(), all.end());
    }
  }
  double best = 0.0;
  for (double x : host) best = max_norm_combine(best, x);
  return best;
}

void reduce_slices_max_device(const Context& ctx, const SlicePartials& partials,
                              double* device_result) {
  check_partials(ctx, "reduce_slices_max_device", partials);
  require_backend_memory(ctx, "reduce_slices_max_device", device_result);
  GIGAREG_OPTIM_DISPATCH(reduce_max, partials.data, partials.slices, device_result, false, 0.0, 1.0);
}

void max_norm_scale_device(const Context& ctx, const SlicePartials& partials, double target,
                           double floor, double* device_scale) {
  check_partials(ctx, "max_norm_scale_device", partials);
  GIGAREG_REQUIRE(finite(target), "target must be finite");
  GIGAREG_REQUIRE(finite(floor) && floor > 0.0, "floor must be finite and > 0");
  require_backend_memory(ctx, "max_norm_scale_device", device_scale);
  GIGAREG_OPTIM_DISPATCH(reduce_max, partials.data, partials.slices, device_scale, true, target, floor);
}

}  // namespace gigareg
