// gigareg demo: a registration of a phantom pair with ground truth, made from a real brain.
//
// Reads Colin27 (Debian's mricron-data: T1 and the AAL atlas), builds a known transform
// S(x) = A(x + u(x)) from a smooth random warp u and a mild affine A, and makes the moving image
// M = F o S (and its labels, with the label-preserving interpolator). Registering M to F must
// then find T = S^-1, known exactly (inverse warp by fixed-point iteration composed with A^-1).
// The demo registers the pair with the greedy preset (moments, rigid, affine, greedy CC; on the
// GPU when there is one), and reports the error of T against S^-1 over the brain and the atlas
// label Dice before and after, next to what the exact inverse reaches. Prints what it did, the
// figures, and where the outputs are.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/metrics.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::cli {
namespace {

struct DemoOptions {
  std::string image = "/usr/share/mricron/templates/ch2.nii.gz";
  std::string labels = "/usr/share/mricron/templates/aal.nii.gz";
  std::string output = "out/demo";
  double warp_mm = 4.0;
  std::uint64_t seed = 2026;
  std::string preset = "greedy";
  std::string device = "auto";
};

Box whole(const Geometry& g) { return {{0, 0, 0}, g.size}; }

Volume<float> warp_volume(const Volume<float>& moving, const Geometry& fixed_grid, const Affined& affine,
                          const Volume<float>* displacement, Interpolation interpolation) {
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = moving.geometry();
  in.fixed_geometry = fixed_grid;
  in.affine = affine;
  if (displacement) in.displacement = displacement->view();
  in.interpolation = interpolation;
  in.boundary = Boundary::Zero;
  Volume<float> out(fixed_grid);
  warp(Context::cpu(), in, out.view(), whole(fixed_grid));
  return out;
}

double mean_abs_difference(const Volume<float>& a, const Volume<float>& b) {
  double s = 0;
  for (index_t n = 0; n < a.voxel_count(); ++n) s += std::abs(double(a.data()[n]) - b.data()[n]);
  return s / double(a.voxel_count());
}

Affined inverse(const Affined& a) {
  Geometry g;  // reuse the geometry's inverse: a grid whose index->physical map is `a`
  g.direction = a.matrix;
  g.spacing = {1, 1, 1};
  g.origin = a.offset;
  return g.physical_to_index_map();
}

// The known transform S(x) = A(x + u(x)) about the image centre, and the pair it makes.
struct PhantomPair {
  SmoothDeformationSpec spec;
  Volume<float> u;  // the warp part (mm)
  Affined affine;   // A
  Volume<float> moving, moving_labels;
  float det_min = 0, det_max = 0;  // Jacobian determinant of x + u(x)
  double folded = 0;               // voxels where it is not positive
};

PhantomPair make_phantom_pair(const DemoOptions& o, const Image& fixed, const Image& fixed_labels) {
  const Geometry& grid = fixed.voxels.geometry();
  PhantomPair pair;
  pair.spec.max_displacement_mm = o.warp_mm;
  pair.spec.wavelength_mm = 50.0;
  pair.spec.seed = o.seed;
  pair.u = make_smooth_deformation(grid, pair.spec);
  const Vec3d centre = grid.index_to_physical({0.5 * (grid.size.x - 1), 0.5 * (grid.size.y - 1), 0.5 * (grid.size.z - 1)});
  pair.affine = make_affine({4, -3, 5}, {1.03, 0.97, 1.02}, {3, -2, 4}, centre);
  pair.moving = warp_volume(fixed.voxels, grid, pair.affine, &pair.u, Interpolation::Linear);
  pair.moving_labels = warp_volume(fixed_labels.voxels, grid, pair.affine, &pair.u, Interpolation::Label);

  // Jacobian of the warp part: the known deformation must fold nowhere.
  Volume<float> det(grid);
  std::vector<double> nonpositive(std::size_t(grid.size.z));
  jacobian_determinant(Context::cpu(), pair.u.view(), grid, det.view(), whole(grid),
                       SlicePartials{nonpositive.data(), grid.size.z, 1});
  pair.folded = reduce_slices(Context::cpu(), SlicePartials{nonpositive.data(), grid.size.z, 1})[0];
  pair.det_min = det.data()[0], pair.det_max = det.data()[0];
  for (index_t n = 0; n < det.voxel_count(); ++n) {
    pair.det_min = std::min(pair.det_min, det.data()[n]);
    pair.det_max = std::max(pair.det_max, det.data()[n]);
  }
  return pair;
}

// S^-1 exactly: S^-1(y) = z + w(z), z = A^-1 y, with w the inverse of u. As one displacement on
// the fixed grid: d(y) = A^-1 y + w(A^-1 y) - y (compose_fields with v = 0); and the pair
// resampled through it, what a perfect registration reaches.
struct ExactInverse {
  Volume<float> d;
  double max_residual = 0;  // of the fixed-point inversion of u (mm)
  Volume<float> recovered, recovered_labels;
};

ExactInverse exact_inverse(const PhantomPair& pair, const Geometry& grid) {
  Volume<float> w(grid, 3);
  std::vector<double> residual(2 * std::size_t(grid.size.z));
  InverseOptions inv_opts;
  inv_opts.iterations = 50;
  inv_opts.tolerance = 1e-4;
  invert_field(Context::cpu(), pair.u.view(), grid, grid, w.view(), whole(grid), inv_opts, {},
               SlicePartials{residual.data(), grid.size.z, 2});
  ExactInverse x;
  x.max_residual = max_over_slices(Context::cpu(), SlicePartials{residual.data(), grid.size.z, 2}, 0);
  x.d = Volume<float>(grid, 3);
  compose_fields(Context::cpu(), VolumeView<const float>{}, grid, inverse(pair.affine), w.view(), grid,
                 x.d.view(), whole(grid));
  x.recovered = warp_volume(pair.moving, grid, Affined::identity(), &x.d, Interpolation::Linear);
  x.recovered_labels = warp_volume(pair.moving_labels, grid, Affined::identity(), &x.d, Interpolation::Label);
  return x;
}

// Moving M onto fixed F with the preset, a line per level as it goes.
RegistrationResult register_pair(const DemoOptions& o, const Image& fixed, const Volume<float>& moving) {
  RegistrationParams params = registration_preset(o.preset);
  params.device = o.device == "cpu" ? DeviceChoice::Cpu : o.device == "cuda" ? DeviceChoice::Cuda : DeviceChoice::Auto;
  int last_level = -1, last_stage = -1;
  params.progress = [&](const IterationReport& r) {
    if (r.stage != last_stage || r.level != last_level) {
      std::printf("  registering: stage %d level %d/%d\n", r.stage + 1, r.level + 1, r.levels);
      std::fflush(stdout);
      last_stage = r.stage;
      last_level = r.level;
    }
  };
  std::printf("\nregistering moving -> fixed with the '%s' preset...\n", o.preset.c_str());
  return register_images(params, fixed.voxels, moving);
}

// Error of T(x) = A(x + u(x)) against the exact S^-1(x) = x + d(x), over brain voxels (mm).
struct TransformError {
  double mean_before = 0, mean_after = 0, max_after = 0;
  index_t voxels = 0;
};

TransformError transform_error(const RegistrationResult& reg, const Volume<float>& d,
                               const Volume<float>& brain_labels) {
  const Geometry& grid = d.geometry();
  const Affined to_physical = grid.index_to_physical_map();
  double err_sum = 0, before_sum = 0;
  TransformError e;
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        if (brain_labels(i, j, k) < 0.5f) continue;
        const Vec3d x = to_physical({double(i), double(j), double(k)});
        const Vec3d truth = x + Vec3d{d(i, j, k, 0), d(i, j, k, 1), d(i, j, k, 2)};
        Vec3d y = x;
        if (!reg.warp.empty()) y = y + Vec3d{reg.warp(i, j, k, 0), reg.warp(i, j, k, 1), reg.warp(i, j, k, 2)};
        const Vec3d after = reg.affine(y) - truth;
        const Vec3d before = x - truth;
        const double n = std::sqrt(dot(after, after));
        err_sum += n;
        e.max_after = std::max(e.max_after, n);
        before_sum += std::sqrt(dot(before, before));
        ++e.voxels;
      }
  e.mean_before = before_sum / double(e.voxels);
  e.mean_after = err_sum / double(e.voxels);
  return e;
}

void print_outputs(const std::string& output) {
  std::printf("\noutputs in %s:\n", output.c_str());
  std::printf("  fixed.nii.gz, moving.nii.gz, fixed_labels.nii.gz, moving_labels.nii.gz  the pair\n");
  std::printf("  truth_warp.nii.gz (u, mm) + truth_affine.mat (A): moving = fixed o A(x + u(x))\n");
  std::printf("  truth_inverse_displacement.nii.gz                                        S^-1 - identity\n");
  std::printf("  reg_0GenericAffine.mat, reg_1Warp.nii.gz, reg_1InverseWarp.nii.gz          ANTs-style result\n");
  std::printf("  registered.nii.gz, registered_labels.nii.gz                              moving, registered\n");
  std::printf("  apply elsewhere: gigareg apply -i moving.nii.gz -r fixed.nii.gz -o out.nii.gz \\\n"
              "                     -t reg_1Warp.nii.gz -t reg_0GenericAffine.mat\n");
}

int run_demo(const DemoOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  for (const std::string& p : {o.image, o.labels})
    if (!std::filesystem::exists(p))
      throw_error(ErrorKind::Io, p, "not found (Debian's mricron-data package provides it: "
                                    "bash scripts/install-deps.sh)");
  std::printf("gigareg demo: phantom pair from Colin27 with a known transform\n");
  const Image fixed = read_image(o.image);
  const Image fixed_labels = read_image(o.labels);
  const Geometry& grid = fixed.voxels.geometry();
  if (!grid.equals(fixed_labels.voxels.geometry()))
    throw_error(ErrorKind::InvalidInput, o.labels, "is not on the grid of " + o.image);
  std::printf("  fixed   %s (%s, %s)\n", o.image.c_str(), grid.describe().c_str(), to_string(fixed.pixel_type));
  std::printf("  labels  %s (AAL atlas)\n", o.labels.c_str());

  const PhantomPair pair = make_phantom_pair(o, fixed, fixed_labels);
  std::printf("  known transform: smooth warp (max %.1f mm, wavelengths >= %.0f mm, seed %llu) then an affine\n"
              "                   (rotations 4/-3/5 deg, scales 1.03/0.97/1.02, shift 3/-2/4 mm)\n",
              pair.spec.max_displacement_mm, pair.spec.wavelength_mm, (unsigned long long)pair.spec.seed);
  const ExactInverse truth = exact_inverse(pair, grid);
  const RegistrationResult reg = register_pair(o, fixed, pair.moving);
  const Volume<float> registered_labels = warp_volume(pair.moving_labels, grid, reg.affine,
                                                      reg.warp.empty() ? nullptr : &reg.warp, Interpolation::Label);
  const TransformError error = transform_error(reg, truth.d, fixed_labels.voxels);

  const double dice_before = mean_dice(dice_per_label(fixed_labels.voxels, pair.moving_labels));
  const double dice_after = mean_dice(dice_per_label(fixed_labels.voxels, registered_labels));
  const double dice_truth = mean_dice(dice_per_label(fixed_labels.voxels, truth.recovered_labels));
  const double mad_before = mean_abs_difference(fixed.voxels, pair.moving);
  const double mad_after = mean_abs_difference(fixed.voxels, reg.warped);
  const double mad_truth = mean_abs_difference(fixed.voxels, truth.recovered);

  namespace fs = std::filesystem;
  fs::create_directories(o.output);
  const std::string dir = o.output + "/";
  write_image(dir + "fixed.nii.gz", fixed);
  write_image(dir + "fixed_labels.nii.gz", fixed_labels);
  write_image(dir + "moving.nii.gz", pair.moving, fixed.pixel_type, IntegerConversion::RoundAndClamp);
  write_image(dir + "moving_labels.nii.gz", pair.moving_labels, fixed_labels.pixel_type);
  write_displacement_field(dir + "truth_warp.nii.gz", pair.u);
  write_affine_transform(dir + "truth_affine.mat", pair.affine.matrix, pair.affine.offset);
  write_displacement_field(dir + "truth_inverse_displacement.nii.gz", truth.d);
  write_registration_outputs(reg, dir + "reg_", dir + "registered.nii.gz");
  write_image(dir + "registered_labels.nii.gz", registered_labels, fixed_labels.pixel_type);

  const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf("\nresult (%s backend; registration %.1f s, demo %.1f s in all):\n", to_string(reg.backend),
              reg.seconds, seconds);
  std::printf("  known warp: Jacobian determinant in [%.3f, %.3f], %.0f folded voxels; its inverse\n"
              "  by fixed-point iteration has a largest residual of %.1e mm\n",
              pair.det_min, pair.det_max, pair.folded, truth.max_residual);
  std::printf("  error against the known transform over %lld brain voxels (mean / max, mm):\n",
              (long long)error.voxels);
  std::printf("      before %.2f   after registration %.2f / %.2f\n", error.mean_before, error.mean_after,
              error.max_after);
  std::printf("  mean Dice of AAL labels (>= 100 voxels):\n");
  std::printf("      before %.3f   after registration %.3f   with the exact inverse %.3f\n", dice_before,
              dice_after, dice_truth);
  std::printf("  mean |fixed - warped moving| intensity:\n");
  std::printf("      before %.2f   after registration %.2f   with the exact inverse %.2f\n", mad_before,
              mad_after, mad_truth);
  print_outputs(o.output);
  return 0;
}

}  // namespace

Command add_demo_command(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  app.add_option("--image", o->image, "T1 image to deform")->capture_default_str();
  app.add_option("--labels", o->labels, "label map on the same grid")->capture_default_str();
  app.add_option("-o,--output", o->output, "output directory")->capture_default_str();
  app.add_option("--warp-mm", o->warp_mm, "largest displacement of the known warp (mm)")->capture_default_str();
  app.add_option("--seed", o->seed, "seed of the known warp")->capture_default_str();
  app.add_option("--preset", o->preset, "registration preset: affine, greedy or syn")->capture_default_str();
  app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
  return [o] { return run_demo(*o); };
}

}  // namespace gigareg::cli
