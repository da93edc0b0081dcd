// gigareg jacobian and gigareg invert: tools for displacement fields as antsRegistration writes
// them (prefix1Warp.nii.gz: vector NIfTI, physical LPS displacements in mm). Both run the field
// ops of the library (ops/field.hpp) on the CPU or on CUDA.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::cli {
namespace {

Context context_for(const std::string& device_option) {
  switch (ants::for_option("--device", [&] { return ants::parse_device(device_option); })) {
    case DeviceChoice::Cpu: return Context::cpu();
    case DeviceChoice::Cuda:
      if (!cuda_available())
        throw_error(ErrorKind::Cuda, "--device cuda",
                    "no CUDA device is available (or gigareg was built without CUDA)");
      return Context::cuda();
    case DeviceChoice::Auto: break;
  }
  return cuda_available() ? Context::cuda() : Context::cpu();
}

/// Per-slice reduction partials in the backend's memory.
struct Partials {
  Partials(const Context& ctx, index_t slices, int terms)
      : space(ctx.memory_space()),
        memory(allocate_bytes(std::size_t(slices) * std::size_t(terms) * sizeof(double), space,
                              "slice partials"),
               Free{space}),
        view{static_cast<double*>(memory.get()), slices, terms} {}
  struct Free {
    MemorySpace space;
    void operator()(void* p) const { free_bytes(p, space); }
  };
  MemorySpace space;
  std::unique_ptr<void, Free> memory;
  SlicePartials view;
};

/// A displacement field file in the backend's memory (the host copy itself on the CPU), and its
/// grid.
struct Field {
  Geometry grid;
  Volume<float> values;
};
Field load_field(const Context& ctx, const std::string& path) {
  DisplacementField host = read_displacement_field(path);
  const Geometry grid = host.geometry();
  return {grid, ctx.backend == Backend::Cpu ? std::move(host) : host.to(ctx.memory_space())};
}

/// The residual of an inverse, voxel by voxel: r(x) = |w(x) + u(x + w(x))|, evaluated with the
/// same sampling rule as invert_field (compose_fields of w then u), so its largest value is the one
/// the inversion stopped at.
struct ResidualSummary {
  index_t voxels = 0, above = 0;  // above: r > tolerance or not finite
  double percentile[4] = {0, 0, 0, 0};  // 50, 90, 99, 99.9 (nearest rank)
  double largest = 0;                   // infinite when some residual is not finite
  double fraction_above() const { return voxels > 0 ? double(above) / double(voxels) : 0.0; }
};
ResidualSummary inverse_residual(const Context& ctx, const Volume<float>& u, const Volume<float>& w,
                                 double tolerance) {
  const Geometry& grid = w.geometry();
  const Box whole{{0, 0, 0}, grid.size};
  Volume<float> r(grid, 3, ctx.memory_space());
  compose_fields(ctx, w.view(), grid, u.view(), u.geometry(), r.view(), whole);
  const Volume<float> host = ctx.backend == Backend::Cpu ? std::move(r) : r.to(MemorySpace::Host);
  const index_t n = host.voxel_count();
  std::vector<float> norms(static_cast<std::size_t>(n));
  ResidualSummary s;
  s.voxels = n;
  const float* c[3] = {host.data(), host.data() + n, host.data() + 2 * n};
  for (index_t i = 0; i < n; ++i) {
    const double a = c[0][i], b = c[1][i], d = c[2][i];
    const double norm = std::sqrt(a * a + b * b + d * d);
    // Not finite sorts last (as +inf) and counts as above the tolerance.
    norms[std::size_t(i)] = std::isfinite(norm) ? float(norm) : std::numeric_limits<float>::infinity();
    if (!(norm <= tolerance)) ++s.above;
  }
  if (n == 0) return s;
  const double ranks[4] = {0.5, 0.9, 0.99, 0.999};
  for (int q = 0; q < 4; ++q) {
    const auto k = std::size_t(std::max<double>(0.0, std::ceil(ranks[q] * double(n)) - 1.0));
    std::nth_element(norms.begin(), norms.begin() + std::ptrdiff_t(k), norms.end());
    s.percentile[q] = norms[k];
  }
  s.largest = *std::max_element(norms.begin(), norms.end());
  return s;
}

std::string describe_grid(const Geometry& g) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%lld x %lld x %lld voxels of %.4g x %.4g x %.4g mm", (long long)g.size.x,
                (long long)g.size.y, (long long)g.size.z, g.spacing.x, g.spacing.y, g.spacing.z);
  return buf;
}

}  // namespace

double count_nonpositive_jacobian(const Volume<float>& field, Volume<float>* det) {
  const Context ctx = field.space() == MemorySpace::Host ? Context::cpu() : Context::cuda();
  const Geometry& grid = field.geometry();
  const Box whole{{0, 0, 0}, grid.size};
  if (field.components() != 3 || !(field.box() == whole))
    throw_error(ErrorKind::InvalidArgument, "count_nonpositive_jacobian",
                "needs a 3-component field covering its whole grid");
  if (det != nullptr) *det = Volume<float>(grid, 1, ctx.memory_space());
  Partials nonpositive(ctx, grid.size.z, 1);
  jacobian_determinant(ctx, field.view(), grid, det != nullptr ? det->view() : VolumeView<float>{}, whole,
                       nonpositive.view);
  return reduce_slices(ctx, nonpositive.view)[0];
}

double count_nonpositive_jacobian(Volume<float>& local, const Partition& part) {
  if (part.size() == 1) return count_nonpositive_jacobian(local);
  const Context ctx = local.space() == MemorySpace::Host ? Context::cpu() : Context::cuda();
  const Geometry& grid = local.geometry();
  const Box owned = part.owned(grid.size);
  // The determinant's central differences read one voxel around the owned planes: filled in
  // place when the volume has room for them (register_files leaves the warp with the inverse's
  // halo), else a copy with them (12 bytes per owned voxel more).
  const Index3 halo{1, 1, 1};
  Volume<float> copy;
  if (local.box().contains(part.halo_box(grid.size, halo)))
    part.exchange_halos({&local}, halo);
  else
    copy = part.fetch(local, part.halo_box(grid.size, halo));
  const Volume<float>& u = copy.empty() ? local : copy;
  Partials nonpositive(ctx, owned.size.z, 1);
  jacobian_determinant(ctx, u.view(), grid, VolumeView<float>{}, owned, nonpositive.view);
  // Counts are integers: their sum does not depend on the order.
  const std::int64_t mine = std::int64_t(reduce_slices(ctx, nonpositive.view)[0]);
  double total = 0;
  for (std::int64_t n : part.gather_host_values({mine})) total += double(n);
  return total;
}

namespace {

// ---------------------------------------------------------------------------------------------

struct JacobianOptions {
  std::string input, output, device = "auto";
};

int run_jacobian(const JacobianOptions& o) {
  const Context ctx = context_for(o.device);
  const Field field = load_field(ctx, o.input);
  const Geometry& grid = field.grid;
  Volume<float> det;
  const double count = count_nonpositive_jacobian(field.values, &det);
  const Volume<float> det_host = det.space() == MemorySpace::Host ? std::move(det) : det.to(MemorySpace::Host);

  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  index_t finite = 0;
  for (index_t i = 0; i < det_host.voxel_count(); ++i) {
    const double d = det_host.data()[i];
    if (!std::isfinite(d)) continue;
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    sum += d;
    ++finite;
  }
  const index_t n = det_host.voxel_count();
  if (!o.output.empty()) write_image(o.output, det_host, PixelType::Float32);

  std::printf("gigareg jacobian: %s (%s) on the %s backend\n", o.input.c_str(), describe_grid(grid).c_str(),
              to_string(ctx.backend));
  if (finite > 0)
    std::printf("  determinant: min %.6g  max %.6g  mean %.6g\n", lo, hi, sum / double(finite));
  if (finite < n) std::printf("  not finite: %lld voxel(s)\n", (long long)(n - finite));
  std::printf("  non-positive determinants: %.0f of %lld voxels (fraction %.3g)\n", count, (long long)n,
              count / double(n));
  if (!o.output.empty()) std::printf("  wrote %s\n", o.output.c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------

struct InvertOptions {
  std::string input, output, device = "auto";
  int iterations = 50;
  double tolerance = 1e-3;
};

int run_invert(const InvertOptions& o) {
  const Context ctx = context_for(o.device);
  const Field field = load_field(ctx, o.input);
  const Geometry& grid = field.grid;
  Volume<float> inverse(grid, 3, ctx.memory_space());
  InverseOptions options;
  options.iterations = o.iterations;
  options.tolerance = o.tolerance;
  const Box whole{{0, 0, 0}, grid.size};
  invert_field(ctx, field.values.view(), grid, grid, inverse.view(), whole, options);
  ResidualSummary r = inverse_residual(ctx, field.values, inverse, o.tolerance);
  int damped_updates = 0;
  if (r.above > 0) {
    // The per-voxel fixed point diverges where |du/dx| > 1 (leaving values far off the inverse
    // there); ITK's damped global iteration, from zero, converges where the map is invertible and
    // stretches by less than 2 / epsilon = 4 along any direction.
    zero_bytes(inverse.data(), inverse.space(), inverse.bytes());
    DampedInverseOptions d;
    d.iterations = o.iterations;
    d.mean_tolerance = 0;
    d.max_tolerance = o.tolerance / std::min({grid.spacing.x, grid.spacing.y, grid.spacing.z});
    d.pin_boundary = false;
    d.boundary = options.boundary;  // as the fixed point
    damped_updates = invert_field_damped(ctx, field.values.view(), grid, inverse.view(), d).iterations;
    r = inverse_residual(ctx, field.values, inverse, o.tolerance);
  }
  write_displacement_field(o.output, inverse);

  std::printf("gigareg invert: %s (%s) on the %s backend, %d iterations at most, tolerance %.3g mm\n",
              o.input.c_str(), describe_grid(grid).c_str(), to_string(ctx.backend), o.iterations, o.tolerance);
  std::printf("  residual |w(x) + u(x + w(x))| over the %lld voxels (mm): median %.3g  90%% %.3g  99%% %.3g  "
              "99.9%% %.3g  largest %.4g\n",
              (long long)r.voxels, r.percentile[0], r.percentile[1], r.percentile[2], r.percentile[3], r.largest);
  if (damped_updates > 0)
    std::printf("  by %d damped updates (ITK's scheme; the fixed point had not converged everywhere)\n",
                damped_updates);
  std::printf("  voxels above the tolerance: %lld (fraction %.3g)\n", (long long)r.above, r.fraction_above());
  std::printf("  wrote %s\n", o.output.c_str());
  if (r.above > 0) {
    char text[512];
    std::snprintf(text, sizeof text,
                  "%s: the inverse did not converge at %lld voxels (fraction %.3g) after %d iterations: "
                  "residual up to %.4g mm above the tolerance %.3g mm. Where the map x -> x + u(x) folds "
                  "(see gigareg jacobian) it has no inverse; elsewhere more --iterations may help.",
                  o.output.c_str(), (long long)r.above, r.fraction_above(), o.iterations, r.largest,
                  o.tolerance);
    std::fflush(stdout);  // the report first, then the warning (stderr) about it
    log(LogLevel::Warning, text);
  }
  return 0;
}

}  // namespace

Command add_jacobian_command(CLI::App& app) {
  auto o = std::make_shared<JacobianOptions>();
  app.footer(
      "Example:\n"
      "  gigareg jacobian -i out/reg_1Warp.nii.gz -o out/reg_jacobian.nii.gz\n"
      "det(I + du/dx) of the map x -> x + u(x) in physical space (spacing and direction applied;\n"
      "central differences, one-sided at the edges). A value <= 0 means the map folds there.");
  app.add_option("-i,--input", o->input,
                 "the displacement field: a 3-component vector image of physical (LPS, mm) "
                 "displacements, as antsRegistration writes PREFIX1Warp.nii.gz")
      ->required();
  app.add_option("-o,--output", o->output,
                 "the determinant image (float32, on the field's grid); not written when omitted");
  app.add_option("--device", o->device, "cpu, cuda or auto (cuda when a GPU is available)")
      ->capture_default_str();
  return [o] { return run_jacobian(*o); };
}

Command add_invert_command(CLI::App& app) {
  auto o = std::make_shared<InvertOptions>();
  app.footer(
      "Example:\n"
      "  gigareg invert -i out/reg_1Warp.nii.gz -o out/reg_1InverseWarp.nii.gz\n"
      "Finds w with w(x) + u(x + w(x)) = 0 on the field's grid by fixed-point iteration\n"
      "w <- -u(x + w), voxel by voxel (u sampled trilinearly, edge values replicated outside);\n"
      "where that does not converge (|du/dx| > 1), by ITK's damped global\n"
      "iteration from zero, which converges where the map is invertible (and stretches < 4x).\n"
      "Reports the residual |w(x) + u(x + w(x))| over the voxels (median, 90%, 99%, 99.9%,\n"
      "largest) and warns when voxels stay above the tolerance (where u folds it has no inverse).");
  app.add_option("-i,--input", o->input, "the displacement field u (vector image, mm, as PREFIX1Warp.nii.gz)")
      ->required();
  app.add_option("-o,--output", o->output, "the inverse field w (vector NIfTI, float32, on u's grid)")->required();
  app.add_option("--iterations", o->iterations, "at most this many fixed-point iterations per voxel")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--tolerance", o->tolerance,
                 "mm: a voxel stops iterating once its residual |w + u(x + w)| is at most this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--device", o->device, "cpu, cuda or auto (cuda when a GPU is available)")
      ->capture_default_str();
  return [o] { return run_invert(*o); };
}

}  // namespace gigareg::cli
