// Cubic B-spline prefilter (Unser's recursive filter), written to give ITK's coefficients: the
// same initial conditions for the mirror boundary (a truncated causal sum when the pole's powers
// fall below 1e-10 within the line, else the exact mirrored sum), the same gain, axes in order
// x, y, z, all in double. One line at a time, lines in parallel (each line is independent, so
// the result does not depend on the thread count).

#include "cpu/bspline.hpp"

#include <cmath>
#include <vector>

#include "cpu/elementwise.hpp"

namespace gigareg::cpu {
namespace {

constexpr double kTolerance = 1e-10;  // ITK's BSplineDecompositionImageFilter default

// c[0] of the causal pass for pole z over the line x[0..n).
double initial_causal(const std::vector<double>& x, double z) {
  const index_t n = index_t(x.size());
  const index_t horizon = index_t(std::ceil(std::log(kTolerance) / std::log(std::fabs(z))));
  double zn = z;
  if (horizon < n) {  // the powers of z vanish before the line ends: a plain truncated sum
    double sum = x[0];
    for (index_t k = 1; k < horizon; ++k) {
      sum += zn * x[std::size_t(k)];
      zn *= z;
    }
    return sum;
  }
  // The exact sum over the mirrored, periodic extension of the line.
  const double iz = 1.0 / z;
  double z2n = std::pow(z, double(n - 1));
  double sum = x[0] + z2n * x[std::size_t(n - 1)];
  z2n *= z2n * iz;
  for (index_t k = 1; k <= n - 2; ++k) {
    sum += (zn + z2n) * x[std::size_t(k)];
    zn *= z;
    z2n *= iz;
  }
  return sum / (1.0 - zn * zn);
}

// The line's coefficients in place.
void prefilter_line(std::vector<double>& x) {
  const index_t n = index_t(x.size());
  if (n == 1) return;
  const double z = std::sqrt(3.0) - 2.0;
  const double gain = (1.0 - z) * (1.0 - 1.0 / z);
  for (double& v : x) v *= gain;
  x[0] = initial_causal(x, z);
  for (index_t k = 1; k < n; ++k) x[std::size_t(k)] += z * x[std::size_t(k - 1)];
  x[std::size_t(n - 1)] = (z / (z * z - 1.0)) * (z * x[std::size_t(n - 2)] + x[std::size_t(n - 1)]);
  for (index_t k = n - 2; k >= 0; --k) x[std::size_t(k)] = z * (x[std::size_t(k + 1)] - x[std::size_t(k)]);
}

// Every line of c along `axis`, filtered in place.
void prefilter_axis(Volume<double>& c, int axis) {
  const Index3 n = c.geometry().size;
  const int a1 = axis == 0 ? 1 : 0, a2 = axis == 2 ? 1 : 2;  // the two other axes
  const index_t lines = n[a1] * n[a2];
#pragma omp parallel
  {
    std::vector<double> line(static_cast<std::size_t>(n[axis]));
#pragma omp for schedule(static)
    for (index_t l = 0; l < lines; ++l) {
      Index3 p{0, 0, 0};
      p[a1] = l % n[a1];
      p[a2] = l / n[a1];
      for (index_t t = 0; t < n[axis]; ++t) {
        p[axis] = t;
        line[std::size_t(t)] = c(p.x, p.y, p.z);
      }
      prefilter_line(line);
      for (index_t t = 0; t < n[axis]; ++t) {
        p[axis] = t;
        c(p.x, p.y, p.z) = line[std::size_t(t)];
      }
    }
  }
}

}  // namespace

Volume<double> bspline3_coefficients(VolumeView<const float> image) {
  Geometry g;
  g.size = image.global_size;
  Volume<double> c(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) c(i, j, k) = double(image.at(i, j, k));
  for (int axis = 0; axis < 3; ++axis) prefilter_axis(c, axis);
  return c;
}

}  // namespace gigareg::cpu
