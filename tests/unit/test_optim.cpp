// Optimiser pieces, CPU reference: Adam against a scalar double implementation over one and
// several steps, the fused update against the unfused sequence (bitwise), the max-norm against a
// naive loop (exact), device-side reductions and scales (on the host backend), slab partials,
// owned-only writes, argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/volume.hpp"

using namespace gigareg;

namespace {

const Context kCpu = Context::cpu();

Geometry grid(Index3 size) {
  Geometry g;
  g.size = size;
  g.spacing = {1.0, 1.2, 0.8};
  return g;
}

Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

void fill_random(Volume<float>& v, unsigned seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = d(rng);
}

/// Scalar double Adam: the textbook formulas, bias corrections applied to the moments.
struct RefAdam {
  double m = 0, v = 0;
  double update(double g, const AdamParams& p) {
    m = p.beta1 * m + (1 - p.beta1) * g;
    v = p.beta2 * v + (1 - p.beta2) * g * g;
    const double mh = m / (1 - std::pow(p.beta1, double(p.step)));
    const double vh = v / (1 - std::pow(p.beta2, double(p.step)));
    return -p.learning_rate * mh / (std::sqrt(vh) + p.eps);
  }
};

/// |a - b| <= tol |b| + floor: the floor keeps elements whose moment crossed zero (where float
/// cancellation is legitimately larger relative to the element) from dominating.
void expect_close(const Volume<float>& got, const std::vector<double>& ref, double tol,
                  double floor, const char* what) {
  double worst = 0.0;
  for (index_t e = 0; e < got.element_count(); ++e) {
    const double d = std::abs(double(got.data()[e]) - ref[std::size_t(e)]);
    worst = std::max(worst, d / (std::abs(ref[std::size_t(e)]) + floor / tol));
    ASSERT_LE(d, tol * std::abs(ref[std::size_t(e)]) + floor) << what << " element " << e;
  }
  ::testing::Test::RecordProperty(what, std::to_string(worst));
}

bool bitwise_equal(const Volume<float>& a, const Volume<float>& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace

TEST(Adam, CoefficientsFoldBiasCorrection) {
  AdamParams p;
  p.learning_rate = 0.1;
  p.step = 3;
  const AdamCoefficients c = adam_coefficients(p);
  EXPECT_FLOAT_EQ(c.step_size, float(0.1 / (1 - std::pow(0.9, 3))));
  EXPECT_FLOAT_EQ(c.inv_bias2, float(1 / (1 - std::pow(0.999, 3))));
  EXPECT_FLOAT_EQ(c.one_minus_beta2, 0.001f);
  AdamParams bad = p;
  bad.step = 0;
  EXPECT_THROW(adam_coefficients(bad), Error);
  bad = p;
  bad.beta1 = 1.0;
  EXPECT_THROW(adam_coefficients(bad), Error);
  bad = p;
  bad.learning_rate = -1;
  EXPECT_THROW(adam_coefficients(bad), Error);
  bad = p;
  bad.eps = std::nan("");
  EXPECT_THROW(adam_coefficients(bad), Error);
}

TEST(Adam, OneStepMatchesDoubleReference) {
  const Geometry g = grid({12, 10, 8});
  Volume<float> grad(g, 3), m(g, 3), v(g, 3), step(g, 3);
  fill_random(grad, 1, -2.0f, 2.0f);
  fill_random(m, 2, -0.5f, 0.5f);
  fill_random(v, 3, 0.01f, 1.0f);
  AdamParams p;
  p.learning_rate = 0.05;
  p.step = 1;
  std::vector<double> ref_step, ref_m, ref_v;
  for (index_t e = 0; e < grad.element_count(); ++e) {
    RefAdam r{m.data()[e], v.data()[e]};
    ref_step.push_back(r.update(grad.data()[e], p));
    ref_m.push_back(r.m);
    ref_v.push_back(r.v);
  }
  adam_update(kCpu, grad.view(), m.view(), v.view(), step.view(), p, whole_box(g));
  expect_close(m, ref_m, 1e-5, 1e-7, "m");
  expect_close(v, ref_v, 1e-5, 1e-9, "v");
  expect_close(step, ref_step, 1e-5, 1e-7, "step");
}

TEST(Adam, SeveralStepsMatchDoubleReference) {
  const Geometry g = grid({9, 8, 7});
  const index_t n = g.voxel_count() * 3;
  Volume<float> grad(g, 3), m(g, 3), v(g, 3), u(g, 3);
  m.fill(0.0f);
  v.fill(0.0f);
  u.fill(0.0f);
  std::vector<RefAdam> ref(std::size_t(n), RefAdam{});
  std::vector<double> ref_u(std::size_t(n), 0.0);
  AdamParams p;
  p.learning_rate = 0.02;
  p.beta1 = 0.85;
  p.beta2 = 0.99;
  p.eps = 1e-6;
  for (std::int64_t t = 1; t <= 6; ++t) {
    p.step = t;
    fill_random(grad, unsigned(100 + t), -1.0f, 1.5f);
    for (index_t e = 0; e < n; ++e) ref_u[std::size_t(e)] += ref[std::size_t(e)].update(grad.data()[e], p);
    // Apply the step to the displacement directly (Add mode).
    adam_update(kCpu, grad.view(), m.view(), v.view(), u.view(), p, whole_box(g), StepOutput::Add);
  }
  std::vector<double> ref_m, ref_v;
  for (const RefAdam& r : ref) {
    ref_m.push_back(r.m);
    ref_v.push_back(r.v);
  }
  expect_close(m, ref_m, 1e-5, 1e-6, "m");
  expect_close(v, ref_v, 1e-5, 1e-8, "v");
  expect_close(u, ref_u, 1e-5, 1e-6, "u");
}

TEST(Adam, FusedEqualsUnfusedSequenceBitwise) {
  const Geometry g = grid({11, 9, 6});
  Volume<float> grad(g, 3), m0(g, 3), v0(g, 3), u0(g, 3);
  fill_random(grad, 21, -3.0f, 3.0f);
  fill_random(m0, 22, -1.0f, 1.0f);
  fill_random(v0, 23, 0.0f, 2.0f);
  fill_random(u0, 24, -5.0f, 5.0f);
  AdamParams p;
  p.learning_rate = 0.3;
  p.step = 4;
  const double scale = 0.37;
  const Box box = whole_box(g);

  // Unfused: moments, step, scale, then the add on the host.
  Volume<float> m1 = m0.clone(), v1 = v0.clone(), step1(g, 3), u1 = u0.clone();
  adam_moments(kCpu, grad.view(), m1.view(), v1.view(), p, box);
  adam_step(kCpu, m1.view(), v1.view(), step1.view(), p, box);
  Volume<float> step1s = step1.clone();
  scale_field(kCpu, step1s.view(), &scale, box);
  for (index_t e = 0; e < u1.element_count(); ++e) u1.data()[e] = u1.data()[e] + step1s.data()[e];

  // Fused, Write without scale.
  {
    Volume<float> m2 = m0.clone(), v2 = v0.clone(), step2(g, 3);
    adam_update(kCpu, grad.view(), m2.view(), v2.view(), step2.view(), p, box);
    EXPECT_TRUE(bitwise_equal(m1, m2));
    EXPECT_TRUE(bitwise_equal(v1, v2));
    EXPECT_TRUE(bitwise_equal(step1, step2));
  }
  // Fused, Write with a scale read through a pointer.
  {
    Volume<float> m2 = m0.clone(), v2 = v0.clone(), step2(g, 3);
    adam_update(kCpu, grad.view(), m2.view(), v2.view(), step2.view(), p, box, StepOutput::Write,
                &scale);
    EXPECT_TRUE(bitwise_equal(step1s, step2));
  }
  // Fused, Add with a scale.
  {
    Volume<float> m2 = m0.clone(), v2 = v0.clone(), u2 = u0.clone();
    adam_update(kCpu, grad.view(), m2.view(), v2.view(), u2.view(), p, box, StepOutput::Add, &scale);
    EXPECT_TRUE(bitwise_equal(m1, m2));
    EXPECT_TRUE(bitwise_equal(v1, v2));
    EXPECT_TRUE(bitwise_equal(u1, u2));
  }
}

TEST(Adam, WritesOnlyTheOwnedBox) {
  const Geometry g = grid({10, 9, 12});
  const Box owned{{2, 1, 3}, {6, 7, 5}};
  Volume<float> grad(g, 3), m(g, 3), v(g, 3), out(g, 3);
  fill_random(grad, 31, -1.0f, 1.0f);
  fill_random(m, 32, -1.0f, 1.0f);
  fill_random(v, 33, 0.1f, 1.0f);
  const Volume<float> m0 = m.clone(), v0 = v.clone();
  out.fill(std::numeric_limits<float>::quiet_NaN());
  adam_update(kCpu, grad.view(), m.view(), v.view(), out.view(), AdamParams{}, owned);
  for (int c = 0; c < 3; ++c)
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) {
          const bool in = owned.contains(i, j, k);
          ASSERT_EQ(std::isnan(out(i, j, k, c)), !in);
          ASSERT_EQ(m(i, j, k, c) == m0(i, j, k, c), !in);
          ASSERT_EQ(v(i, j, k, c) == v0(i, j, k, c), !in);
        }
}

TEST(MaxNorm, PartialsMatchNaiveExactlyAndReduce) {
  const Geometry g = grid({13, 11, 9});
  Volume<float> f(g, 3);
  fill_random(f, 41, -2.0f, 2.0f);
  f(7, 3, 5, 0) = 3.0f;  // a known largest vector: (3, 4, 12) has norm 13
  f(7, 3, 5, 1) = -4.0f;
  f(7, 3, 5, 2) = 12.0f;
  const Box owned = whole_box(g);
  std::vector<double> partials(std::size_t(g.size.z), -1.0);
  max_norm_partials(kCpu, f.view(), owned, SlicePartials{partials.data(), g.size.z, 1});
  double naive_max = 0.0;
  for (index_t k = 0; k < g.size.z; ++k) {
    double slice_max = 0.0;
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const double x = f(i, j, k, 0), y = f(i, j, k, 1), z = f(i, j, k, 2);
        slice_max = std::max(slice_max, std::sqrt(x * x + y * y + z * z));
      }
    EXPECT_EQ(partials[std::size_t(k)], slice_max) << "slice " << k;
    naive_max = std::max(naive_max, slice_max);
  }
  EXPECT_EQ(naive_max, 13.0);
  const SlicePartials sp{partials.data(), g.size.z, 1};
  EXPECT_EQ(reduce_slices_max(kCpu, sp), 13.0);
  double on_backend = -1.0;
  reduce_slices_max_device(kCpu, sp, &on_backend);
  EXPECT_EQ(on_backend, 13.0);
  double scale = 0.0;
  max_norm_scale_device(kCpu, sp, 0.5, 1.0, &scale);
  EXPECT_EQ(scale, 0.5 / 13.0);
  max_norm_scale_device(kCpu, sp, 0.5, 20.0, &scale);  // the floor wins
  EXPECT_EQ(scale, 0.5 / 20.0);
  EXPECT_EQ(reduce_slices_max(kCpu, SlicePartials{nullptr, 0, 1}), 0.0);
}

TEST(MaxNorm, SlabPartialsAreTheWholeVolumesSlices) {
  const Geometry g = grid({10, 8, 15});
  Volume<float> f(g, 3);
  fill_random(f, 42, -1.0f, 1.0f);
  std::vector<double> whole(15);
  max_norm_partials(kCpu, f.view(), whole_box(g), SlicePartials{whole.data(), 15, 1});
  for (index_t z0 : {0, 4, 9}) {
    const index_t nz = z0 == 9 ? 6 : (z0 == 0 ? 4 : 5);
    const Box owned{{0, 0, z0}, {10, 8, nz}};
    Volume<float> slab(g, owned, 3);
    for (int c = 0; c < 3; ++c)
      for (index_t k = z0; k < z0 + nz; ++k)
        for (index_t j = 0; j < 8; ++j)
          for (index_t i = 0; i < 10; ++i) slab(i, j, k, c) = f(i, j, k, c);
    std::vector<double> part(static_cast<std::size_t>(nz));
    max_norm_partials(kCpu, slab.view(), owned, SlicePartials{part.data(), nz, 1});
    for (index_t s = 0; s < nz; ++s) EXPECT_EQ(part[std::size_t(s)], whole[std::size_t(z0 + s)]);
  }
}

TEST(MaxNorm, RejectsBadArguments) {
  const Geometry g = grid({6, 5, 4});
  Volume<float> f(g, 3), s(g, 1);
  f.fill(1.0f);
  s.fill(1.0f);
  std::vector<double> p(4);
  EXPECT_THROW(max_norm_partials(kCpu, s.view(), whole_box(g), SlicePartials{p.data(), 4, 1}), Error);
  EXPECT_THROW(max_norm_partials(kCpu, f.view(), whole_box(g), SlicePartials{p.data(), 3, 1}), Error);
  EXPECT_THROW(max_norm_partials(kCpu, f.view(), whole_box(g), SlicePartials{p.data(), 2, 2}), Error);
  EXPECT_THROW(max_norm_scale_device(kCpu, SlicePartials{p.data(), 4, 1}, 1.0, 0.0, p.data()), Error);
  Volume<float> m(g, 3), v(g, 3), out(g, 1);
  EXPECT_THROW(adam_update(kCpu, f.view(), m.view(), v.view(), out.view(), AdamParams{}, whole_box(g)),
               Error);
  EXPECT_THROW(adam_update(kCpu, f.view(), m.view(), v.view(), m.view(), AdamParams{}, whole_box(g)),
               Error);
}
