#include "gigareg/phantom.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "gigareg/error.hpp"

namespace gigareg {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Mode {
  Vec3d wave;   // wave vector (radians per mm)
  double phase;
  double weight;
};

}  // namespace

Volume<float> make_smooth_deformation(const Geometry& grid, const SmoothDeformationSpec& spec) {
  GIGAREG_REQUIRE(spec.modes >= 1 && spec.wavelength_mm > 0 && spec.max_displacement_mm >= 0,
                  "modes >= 1, wavelength > 0 and amplitude >= 0");
  std::mt19937_64 rng(spec.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<Mode> modes[3];
  for (auto& component : modes)
    for (int m = 0; m < spec.modes; ++m) {
      Vec3d dir{gauss(rng), gauss(rng), gauss(rng)};
      const double len = std::sqrt(dot(dir, dir));
      const double wavelength = spec.wavelength_mm * (1.0 + unit(rng));
      component.push_back({(2.0 * kPi / wavelength / len) * dir, 2.0 * kPi * unit(rng), 0.5 + unit(rng)});
    }

  Volume<float> u(grid, 3);
  const Affined to_physical = grid.index_to_physical_map();
  const Vec3d centre = grid.index_to_physical({0.5 * (grid.size.x - 1), 0.5 * (grid.size.y - 1),
                                               0.5 * (grid.size.z - 1)});
  double max_norm = 0;
#pragma omp parallel for reduction(max : max_norm) schedule(static)
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        const Vec3d p = to_physical({double(i), double(j), double(k)}) - centre;
        double d[3];
        for (int c = 0; c < 3; ++c) {
          d[c] = 0;
          for (const Mode& m : modes[c]) d[c] += m.weight * std::sin(dot(m.wave, p) + m.phase);
          u(i, j, k, c) = float(d[c]);
        }
        max_norm = std::max(max_norm, std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]));
      }
  const float scale = max_norm > 0 ? float(spec.max_displacement_mm / max_norm) : 0.0f;
  float* p = u.data();
  for (index_t n = 0; n < u.element_count(); ++n) p[n] *= scale;
  return u;
}

Affined make_affine(Vec3d rotation_deg, Vec3d scale, Vec3d translation_mm, Vec3d center) {
  const double ax = rotation_deg.x * kPi / 180, ay = rotation_deg.y * kPi / 180, az = rotation_deg.z * kPi / 180;
  const Mat3d rx{{1, 0, 0, 0, std::cos(ax), -std::sin(ax), 0, std::sin(ax), std::cos(ax)}};
  const Mat3d ry{{std::cos(ay), 0, std::sin(ay), 0, 1, 0, -std::sin(ay), 0, std::cos(ay)}};
  const Mat3d rz{{std::cos(az), -std::sin(az), 0, std::sin(az), std::cos(az), 0, 0, 0, 1}};
  const Mat3d s{{scale.x, 0, 0, 0, scale.y, 0, 0, 0, scale.z}};
  const Mat3d m = rz * ry * rx * s;
  // y = M (x - c) + c + t = M x + (c + t - M c)
  return {m, center + translation_mm - m * center};
}

}  // namespace gigareg
