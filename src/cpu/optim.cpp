// CPU reference of the optimiser ops (element-wise ones through cpu::for_each_element).
// The element-wise math is device/adam.hpp's, shared with kernels/optim.cu.

#include <algorithm>

#include "cpu/elementwise.hpp"
#include "gigareg/device/adam.hpp"

namespace gigareg::cpu {

void adam_moments(VolumeView<const float> grad, VolumeView<float> m, VolumeView<float> v,
                  const AdamCoefficients& c, const Box& owned) {
  for_each_element(owned, grad.components, [&](index_t i, index_t j, index_t k, int q) {
    float mm = m.at(i, j, k, q), vv = v.at(i, j, k, q);
    adam_moments_update(c, grad.at(i, j, k, q), mm, vv);
    m.at(i, j, k, q) = mm;
    v.at(i, j, k, q) = vv;
  });
}

void adam_step(VolumeView<const float> m, VolumeView<const float> v, VolumeView<float> step,
               const AdamCoefficients& c, const Box& owned) {
  for_each_element(owned, m.components, [&](index_t i, index_t j, index_t k, int q) {
    step.at(i, j, k, q) = adam_step_value(c, m.at(i, j, k, q), v.at(i, j, k, q));
  });
}

template <class M>
void adam_update(VolumeView<const float> grad, VolumeView<M> m, VolumeView<M> v,
                 VolumeView<float> out, const AdamCoefficients& c, const Box& owned, bool add,
                 const double* scale) {
  const bool scaled = scale != nullptr;
  const float s = scaled ? float(*scale) : 1.0f;
  // Each element's gradient is read before its output is written (out may alias grad).
  for_each_element(owned, grad.components, [&](index_t i, index_t j, index_t k, int q) {
    float mm = load_moment(m.at(i, j, k, q)), vv = load_moment(v.at(i, j, k, q));
    const float st = adam_update_element(c, grad.at(i, j, k, q), mm, vv, scaled, s);
    store_moment(m.at(i, j, k, q), mm);
    store_moment(v.at(i, j, k, q), vv);
    float& o = out.at(i, j, k, q);
    o = add ? o + st : st;
  });
}
template void adam_update(VolumeView<const float>, VolumeView<float>, VolumeView<float>,
                          VolumeView<float>, const AdamCoefficients&, const Box&, bool,
                          const double*);
template void adam_update(VolumeView<const float>, VolumeView<bfloat16>, VolumeView<bfloat16>,
                          VolumeView<float>, const AdamCoefficients&, const Box&, bool,
                          const double*);

void scale_field(VolumeView<float> field, const double* scale, const Box& owned) {
  const float s = float(*scale);
  for_each_element(owned, field.components, [&](index_t i, index_t j, index_t k, int q) {
    float& x = field.at(i, j, k, q);
    x = x * s;
  });
}

void max_norm_partials(VolumeView<const float> field, const Box& owned, double* partials) {
#pragma omp parallel for schedule(static)
  for (index_t s = 0; s < owned.size.z; ++s) {
    const index_t k = owned.lo.z + s;
    double best = 0.0;
    for (index_t j = owned.lo.y; j < owned.lo.y + owned.size.y; ++j)
      for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i)
        best = max_norm_combine(
            best, vector_norm(field.at(i, j, k, 0), field.at(i, j, k, 1), field.at(i, j, k, 2)));
    partials[s] = best;
  }
}

void reduce_max(const double* partials, index_t slices, double* result, bool as_scale,
                double target, double floor) {
  double best = 0.0;
  for (index_t s = 0; s < slices; ++s) best = max_norm_combine(best, partials[s]);
  *result = as_scale ? target / std::max(best, floor) : best;
}

}  // namespace gigareg::cpu
