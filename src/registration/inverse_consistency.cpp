// The inverse consistency report (inverse_consistency.hpp).

#include "registration/inverse_consistency.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gigareg/log.hpp"
#include "gigareg/ops/field.hpp"
#include "registration/buffers.hpp"
#include "registration/level_report.hpp"

namespace gigareg::reg {

DampedInverseOptions final_inverse_options(const RegistrationParams& params, const Geometry& g) {
  DampedInverseOptions o;
  o.iterations = std::max(params.inverse_iterations, 1);
  o.mean_tolerance = 0;  // the largest residual decides
  o.max_tolerance = params.inverse_tolerance_mm / std::min({g.spacing.x, g.spacing.y, g.spacing.z});
  o.newton = true;  // converges where the map compresses or stretches strongly
  return o;
}

void make_inverse_pair(const Context& ctx, Volume<float>& field, const Volume<float>& inverse,
                       const RegistrationParams& params) {
  const Geometry& g = field.geometry();
  const DampedInverseReport r =
      invert_field_damped(ctx, inverse.view(), g, field.view(), final_inverse_options(params, g));
  log(LogLevel::Debug, "warp made the inverse of the inverse warp: " + std::to_string(r.iterations) +
                           " updates, largest residual " + fmt(r.max_error, 3) + " voxels");
}

double log_inverse_consistency(const Context& ctx, const Volume<float>& field,
                               const Volume<float>& inverse, const Volume<float>& fixed) {
  const Geometry& g = field.geometry();
  const Box all = whole(g);
  if (!(field.box() == all) || !(inverse.box() == all) || !(fixed.box() == all) ||
      fixed.space() != MemorySpace::Host)
    return 0.0;  // sharded or partial inputs: not reported here
  Volume<float> r(g, 3, ctx.memory_space());
  compose_fields(ctx, field.view(), g, inverse.view(), g, r.view(), all, Boundary::FieldTransform);
  const Volume<float> host = ctx.backend == Backend::Cpu ? std::move(r) : r.to(MemorySpace::Host);
  const index_t n = host.voxel_count();
  float top = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static) reduction(max : top)
  for (index_t i = 0; i < n; ++i) top = std::max(top, fixed.data()[i]);
  // The foreground voxels' norms, on all cores: each thread keeps its static chunk's in voxel
  // order, and the chunks are joined in order (the quantiles below depend on the values only).
  const float* c[3] = {host.data(), host.data() + n, host.data() + 2 * n};
  std::vector<std::vector<float>> chunks(std::size_t(std::max(1, omp_get_max_threads())));
#pragma omp parallel num_threads(int(chunks.size()))
  {
    std::vector<float>& mine = chunks[std::size_t(omp_get_thread_num())];
#pragma omp for schedule(static)
    for (index_t i = 0; i < n; ++i) {
      if (!(fixed.data()[i] >= 0.1f * top)) continue;
      const double a = c[0][i], b = c[1][i], d = c[2][i];
      const double norm = std::sqrt(a * a + b * b + d * d);
      mine.push_back(std::isfinite(norm) ? float(norm) : std::numeric_limits<float>::infinity());
    }
  }
  std::vector<float> norms;
  for (const std::vector<float>& chunk : chunks) norms.insert(norms.end(), chunk.begin(), chunk.end());
  if (norms.empty()) return 0.0;
  const double ranks[4] = {0.5, 0.9, 0.99, 0.999};
  double q[4];
  for (int k = 0; k < 4; ++k) {  // nearest rank
    const auto at = std::size_t(std::max(0.0, std::ceil(ranks[k] * double(norms.size())) - 1.0));
    std::nth_element(norms.begin(), norms.begin() + std::ptrdiff_t(at), norms.end());
    q[k] = norms[at];
  }
  const double largest = *std::max_element(norms.begin(), norms.end());
  const double h = std::min({g.spacing.x, g.spacing.y, g.spacing.z});
  auto both = [&](double mm) { return fmt(mm, 3) + " mm (" + fmt(mm / h, 3) + " vox)"; };
  log(LogLevel::Info, "inverse consistency |u(x) + w(x + u(x))| over the fixed foreground (" +
                          std::to_string(norms.size()) + " voxels >= 10% of the fixed maximum): " +
                          "median " + both(q[0]) + ", 90% " + both(q[1]) + ", 99% " + both(q[2]) +
                          ", 99.9% " + both(q[3]) + ", largest " + both(largest));
  if (q[3] > 0.1 * h)
    log(LogLevel::Warning,
        "the inverse warp is not an inverse everywhere: 99.9% of the fixed foreground within " +
            both(q[3]) + " (where the warp folds it has no inverse; see gigareg jacobian)");
  return largest;
}

}  // namespace gigareg::reg
