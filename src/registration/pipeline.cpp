// The pipeline driver (register_images), its file-level wrapper and outputs, and the
// antsApplyTransforms-style resampling through a list of transforms.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <future>
#include <list>
#include <string>
#include <utility>

#include "gigareg/composite_transform.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/qc.hpp"
#include "gigareg/register_command.hpp"
#include "registration/buffers.hpp"
#include "registration/halos.hpp"
#include "registration/input_agreement.hpp"
#include "registration/inverse_consistency.hpp"
#include "registration/intensity_preprocessing.hpp"
#include "registration/level_image.hpp"
#include "registration/level_report.hpp"
#include "registration/moving_window.hpp"
#include "registration/reductions.hpp"
#include "registration/stages.hpp"

namespace gigareg {
namespace {

using reg::whole;

Context choose_backend(DeviceChoice device, const char* where) {
  switch (device) {
    case DeviceChoice::Cpu: return Context::cpu();
    case DeviceChoice::Cuda:
      if (!cuda_available())
        throw_error(ErrorKind::Cuda, where,
                    "the cuda device was requested but no CUDA device is available (or gigareg "
                    "was built without CUDA)");
      return Context::cuda();
    case DeviceChoice::Auto: return cuda_available() ? Context::cuda() : Context::cpu();
  }
  return Context::cpu();
}

void check_image(const Volume<float>& v, const char* what) {
  if (v.empty()) throw_error(ErrorKind::InvalidArgument, what, "the volume is empty");
  if (v.space() != MemorySpace::Host)
    throw_error(ErrorKind::InvalidArgument, what, "pass host volumes (the pipeline uploads them)");
  if (v.components() != 1) throw_error(ErrorKind::InvalidArgument, what, "expected a scalar image");
  if (!(v.box() == whole(v.geometry())))
    throw_error(ErrorKind::InvalidArgument, what, "the volume must cover its whole grid");
  v.geometry().validate(what);
}

/// check_image for a volume that holds `planes` of its grid (a process's part of an input).
void check_planes(const Volume<float>& v, const Box& planes, const char* what) {
  if (v.empty()) throw_error(ErrorKind::InvalidArgument, what, "the volume is empty");
  if (v.space() != MemorySpace::Host)
    throw_error(ErrorKind::InvalidArgument, what, "pass host volumes (the pipeline uploads them)");
  if (v.components() != 1) throw_error(ErrorKind::InvalidArgument, what, "expected a scalar image");
  const Box& b = v.box();
  if (!b.contains(planes) || b.lo.x != 0 || b.lo.y != 0 || b.size.x != v.geometry().size.x ||
      b.size.y != v.geometry().size.y)
    throw_error(ErrorKind::InvalidArgument, what,
                "the volume must hold whole x-y planes including planes " + std::to_string(planes.lo.z) +
                    " to " + std::to_string(planes.lo.z + planes.size.z - 1) + " (registration_input_planes)");
  v.geometry().validate(what);
}


bool is_identity(const Affined& a) {
  const Affined id = Affined::identity();
  for (int i = 0; i < 9; ++i)
    if (a.matrix.m[i] != id.matrix.m[i]) return false;
  return a.offset.x == 0 && a.offset.y == 0 && a.offset.z == 0;
}

/// `v` in ctx's memory: borrowed on the CPU, uploaded on CUDA (into `storage`).
const Volume<float>* in_backend(const Context& ctx, const Volume<float>* v, Volume<float>& storage) {
  if (v == nullptr) return nullptr;
  if (ctx.backend == Backend::Cpu) return v;
  storage = v->to(MemorySpace::Device);
  return &storage;
}

/// `planes` of host volume `v` in ctx's memory: `v` itself on the CPU (it holds them), a copy of
/// just those planes on CUDA (into `storage`).
const Volume<float>* planes_in_backend(const Context& ctx, const Volume<float>* v, const Box& planes,
                                       Volume<float>& storage) {
  if (v == nullptr) return nullptr;
  if (ctx.backend == Backend::Cpu) return v;
  if (v->box() == planes) {
    storage = v->to(MemorySpace::Device);
  } else {
    storage = Volume<float>(v->geometry(), planes, 1, MemorySpace::Device);
    const std::size_t plane = std::size_t(planes.size.x) * std::size_t(planes.size.y);
    copy_bytes(storage.data(), MemorySpace::Device,
               v->data() + std::size_t(planes.lo.z - v->box().lo.z) * plane, MemorySpace::Host,
               std::size_t(planes.size.z) * plane * sizeof(float));
  }
  return &storage;
}

Volume<float> to_host(Volume<float>&& v) {
  if (v.empty() || v.space() == MemorySpace::Host) return std::move(v);
  return v.to(MemorySpace::Host);
}

}  // namespace

namespace {

/// The whole of a sharded array on the host of rank 0 (its owned box is in `local`); empty
/// elsewhere. One process: the array itself.
Volume<float> collect(const Partition& part, Volume<float>&& local) {
  if (local.empty()) return {};
  const Geometry& g = local.geometry();
  if (part.size() == 1 && local.box() == whole(g)) return to_host(std::move(local));
  Volume<float> all = part.fetch(local, part.rank() == 0 ? whole(g) : Box{});
  return to_host(std::move(all));
}

}  // namespace


namespace {

/// The levels' parameters that only the fixed image's grid can judge, named by their options.
/// A shrink factor beyond the fixed image's largest size makes a level of one voxel on every axis:
/// nothing is registered there, and a typo (-f 1e308 for 1x1x1) would pass unnoticed. A smoothing
/// sigma whose kernel exceeds the smoothing ops' limit would fail deep in the pipeline.
void check_levels_against(const RegistrationParams& params, const Geometry& fixed) {
  const index_t largest = std::max({fixed.size.x, fixed.size.y, fixed.size.z});
  for (std::size_t s = 0; s < params.stages.size(); ++s) {
    const StageParams& st = params.stages[s];
    for (double sigma : st.smoothing_sigmas) {
      try {
        gaussian_radii(reg::sigma_voxels(fixed, sigma, st.sigmas_in_mm));
      } catch (const Error& e) {
        char value[32];
        std::snprintf(value, sizeof value, "%g", sigma);
        throw_error(ErrorKind::InvalidArgument, "-s/--smoothing-sigmas",
                    "stage " + std::to_string(s + 1) + ": the smoothing sigma " + value +
                        " is too large for the fixed image's voxels (" + e.problem() + ")");
      }
    }
    for (double f : st.shrink_factors)
      if (f > double(largest)) {
        char value[32];
        std::snprintf(value, sizeof value, "%g", f);
        throw_error(ErrorKind::InvalidArgument, "-f/--shrink-factors",
                    "stage " + std::to_string(s + 1) + ": the shrink factor " + value +
                        " exceeds the fixed image's largest size (" + std::to_string(largest) +
                        " voxels): that level would be a single voxel");
      }
  }
}

/// The inverse of an affine read from `path` (given as [file,1]): a singular matrix is that
/// file's problem, and the message names it.
Affined inverse_of_file_affine(const Affined& a, const std::string& path) {
  try {
    return invert_affine(a);
  } catch (const Error&) {
    throw_error(ErrorKind::InvalidInput, path,
                "the affine transform is singular: it cannot be inverted (useInverse = 1)");
  }
}

}  // namespace

InputPlanes registration_input_planes(const RegistrationParams& params, const Geometry& fixed,
                                      const Geometry& moving, const Partition& part) {
  check_levels_against(params, fixed);
  InputPlanes p;
  const Box all_moving{{0, 0, 0}, moving.size};
  p.moving = part.size() == 1 ? all_moving : part.owned(moving.size);
  if (part.size() == 1) {
    p.fixed = whole(fixed);
    return p;
  }
  index_t lo = fixed.size.z, hi = 0;
  for (const StageParams& stage : params.stages)
    for (std::size_t lv = 0; lv < stage.shrink_factors.size(); ++lv) {
      const Geometry lg = pyramid_level_geometry(fixed, stage.shrink_factors[lv]);
      const Box box = part.halo_box(lg.size, reg::metric_image_halo(stage.metric));
      const Vec3d sigma = reg::sigma_voxels(fixed, stage.smoothing_sigmas[lv], stage.sigmas_in_mm);
      const Box planes = reg::source_planes(fixed, lg, box, sigma);
      lo = std::min(lo, planes.lo.z);
      hi = std::max(hi, planes.lo.z + planes.size.z);
    }
  if (hi <= lo) {  // no stage: the owned planes
    const Box o = part.owned(fixed.size);
    lo = o.lo.z;
    hi = o.lo.z + o.size.z;
  }
  p.fixed = {{0, 0, lo}, {fixed.size.x, fixed.size.y, hi - lo}};
  return p;
}

namespace {

/// Where register_images leaves the warp, inverse warp and warped image.
enum class ResultMemory {
  Host,     // the public API: host volumes (rank 0 gathers them under a partition)
  Backend,  // left in the backend's memory on the owned planes (one process: the whole grid), so
            // that files are written from the GPU by slabs without a whole host copy, and each
            // process of a partition writes its own planes (register_files)
};

// The inverse warp of `field` (fixed grid, this process's owned box) by the per-voxel fixed point,
// its largest residual (mm) in `residual_mm`. Each voxel's iteration samples u within the largest
// |u| of it: one halo of that size, then no communication until the residual.
Volume<float> fixed_point_inverse(const Context& ctx, const Partition& part, const RegistrationParams& params,
                                  Volume<float>& field, double field_norm, double& residual_mm) {
  const Geometry& fg = field.geometry();
  const Box owned = part.owned(fg.size);
  const Index3 halo = reg::displacement_halo(fg, field_norm);
  const Box need = part.halo_box(fg.size, halo);
  if (field.box().contains(need)) part.exchange_halos({&field}, halo);
  else field = part.fetch(field, need);
  Volume<float> inverse(fg, owned, 3, ctx.memory_space());
  InverseOptions opts;
  opts.iterations = params.inverse_iterations;
  opts.tolerance = params.inverse_tolerance_mm;
  reg::GatheredPartials residual(ctx, part, fg, owned, 2);
  invert_field(ctx, field.view(), fg, fg, inverse.view(), owned, opts, {}, residual.local());
  const SlicePartials all = residual.gather();
  residual_mm = max_over_slices(ctx, all, 0);
  const double unconverged = reduce_slices(ctx, all)[1];
  log(LogLevel::Info, "inverse warp: largest residual " + reg::fmt(residual_mm, 3) + " mm, " +
                          reg::fmt(unconverged) + " voxels above the tolerance");
  // Where the map compresses by more than 2 (|du/dx| > 1) the per-voxel fixed point diverges.
  // ITK's damped global iteration (invert_field_damped, what `gigareg invert` falls back to)
  // converges there, but it is a whole-grid op of one process: running it here only when alone
  // would make mpirun's inverse warp differ from one process's, so it is left to `gigareg
  // invert` until it is sharded (issue 20).
  return inverse;
}

RegistrationResult register_images_to(ResultMemory memory, const RegistrationParams& params,
                                      const Volume<float>& fixed, const Volume<float>& moving,
                                      const Volume<float>* fixed_mask,
                                      const Volume<float>* moving_mask, const Partition* partition);

}  // namespace

RegistrationResult register_images(const RegistrationParams& params, const Volume<float>& fixed,
                                   const Volume<float>& moving, const Volume<float>* fixed_mask,
                                   const Volume<float>* moving_mask, const Partition* partition) {
  return register_images_to(ResultMemory::Host, params, fixed, moving, fixed_mask, moving_mask,
                            partition);
}

namespace {

RegistrationResult register_images_to(ResultMemory memory, const RegistrationParams& params,
                                      const Volume<float>& fixed, const Volume<float>& moving,
                                      const Volume<float>* fixed_mask,
                                      const Volume<float>* moving_mask, const Partition* partition) {
  const auto t0 = std::chrono::steady_clock::now();
  PhaseClock clock;
  params.validate();
  const Partition& part = partition != nullptr ? *partition : single_process();
  const InputPlanes planes =
      registration_input_planes(params, fixed.geometry(), moving.geometry(), part);
  check_planes(fixed, planes.fixed, "fixed image");
  check_planes(moving, planes.moving, "moving image");
  auto check_mask_planes = [](const Volume<float>* mask, const Volume<float>& image, const Box& p,
                              const char* what) {
    if (mask == nullptr) return;
    check_planes(*mask, p, what);
    if (!mask->geometry().equals(image.geometry(), 1e-4))
      throw_error(ErrorKind::InvalidInput, what,
                  "the mask is not on its image's grid (" + mask->geometry().describe() + " vs " +
                      image.geometry().describe() + ")");
  };
  check_mask_planes(fixed_mask, fixed, planes.fixed, "fixed mask");
  check_mask_planes(moving_mask, moving, planes.moving, "moving mask");
  const Context ctx = choose_backend(params.device, "register_images");
  clock.mark("checks and backend start-up");
  log(LogLevel::Info, std::string("registration on the ") + to_string(ctx.backend) + " backend" +
                          (part.size() > 1 ? ", process " + std::to_string(part.rank() + 1) + " of " +
                                                 std::to_string(part.size())
                                           : std::string()) +
                          ": fixed " + fixed.geometry().describe() + ", moving " +
                          moving.geometry().describe());

  // The initialisation from the planes each process holds (sums combined in plane order: the
  // same numbers everywhere, and the single-process ones).
  reg::PipelineState state;
  const Initialization init = initialize_transform(params.initial, fixed, moving, &part);
  state.affine = init.affine;
  state.center = init.center;
  clock.mark("initialisation");

  // The inputs in the backend's memory: only the planes this process needs.
  Volume<float> store[6];
  reg::Inputs in;
  in.ctx = ctx;
  in.part = &part;
  in.fixed = planes_in_backend(ctx, &fixed, planes.fixed, store[0]);
  in.moving = planes_in_backend(ctx, &moving, planes.moving, store[1]);
  in.fixed_mask = planes_in_backend(ctx, fixed_mask, planes.fixed, store[2]);
  in.moving_mask = planes_in_backend(ctx, moving_mask, planes.moving, store[3]);
  // ANTs' intensity preprocessing (winsorizing, histogram matching): the metrics see these
  // copies; the initialisation above and the warped outputs below see the images as read.
  reg::Inputs metric_in = in;
  reg::MetricImages metric_images;
  if (params.intensities.active()) {
    metric_images = reg::preprocess_intensities(params.intensities, fixed, moving, part);
    metric_in.fixed = planes_in_backend(ctx, &metric_images.fixed, planes.fixed, store[4]);
    metric_in.moving = planes_in_backend(ctx, &metric_images.moving, planes.moving, store[5]);
  }

  clock.mark("inputs to the backend");
  RegistrationResult result;
  result.backend = ctx.backend;
  for (std::size_t s = 0; s < params.stages.size(); ++s)
    reg::run_stage(metric_in, params.stages[s], int(s), params, state, result.levels);

  clock.mark("stages");
  // Outputs at full resolution on the fixed grid, on the owned box.
  const Geometry& fg = fixed.geometry();
  const Box owned = part.owned(fg.size);
  // A field of the last deformable stage on the full-resolution fixed grid.
  auto on_fixed_grid = [&](Volume<float>&& f) {
    if (f.empty() || state.field_geometry.equals(fg)) return std::move(f);
    const Volume<float> source = part.fetch(f, resample_source_box(state.field_geometry, fg, owned));
    Volume<float> out(fg, owned, 3, ctx.memory_space());
    resample_field(ctx, source.view(), state.field_geometry, fg, out.view(), owned);
    return out;
  };
  Volume<float> field = on_fixed_grid(std::move(state.field));
  const double field_norm = field.empty() ? 0.0 : reg::global_max_norm(ctx, part, field, owned);
  reg::MovingWindow window(in, fg, owned, moving.geometry(), Vec3d{0, 0, 0});
  window.cover(state.affine, field_norm);
  WarpInputs w;
  w.moving = window.image().view();
  w.moving_geometry = moving.geometry();
  w.fixed_geometry = fg;
  w.affine = state.affine;
  if (!field.empty()) w.displacement = field.view();
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::FieldTransform;  // ITK's resampler, as antsRegistration's warped output
  Volume<float> warped(fg, owned, 1, ctx.memory_space());
  warp(ctx, w, warped.view(), owned);

  clock.mark("full-resolution field and warped image");
  const bool in_backend = memory == ResultMemory::Backend;
  auto gather = [&](Volume<float>&& v) { return in_backend ? std::move(v) : collect(part, std::move(v)); };
  if (!field.empty() && params.compute_inverse && !state.inverse_field.empty()) {
    // The last stage knows the inverse (SyN: from its half-way fields; one process).
    Volume<float> inverse = on_fixed_grid(std::move(state.inverse_field));
    reg::make_inverse_pair(ctx, field, inverse, params);
    result.inverse_residual_mm = reg::log_inverse_consistency(ctx, field, inverse, fixed);
    result.inverse_warp = gather(std::move(inverse));
  } else if (!field.empty() && params.compute_inverse) {
    Volume<float> inverse = fixed_point_inverse(ctx, part, params, field, field_norm, result.inverse_residual_mm);
    if (part.size() == 1) reg::log_inverse_consistency(ctx, field, inverse, fixed);
    result.inverse_warp = gather(std::move(inverse));
  }
  result.affine = state.affine;
  result.center = state.center;
  clock.mark("inverse warp");
  result.warp = gather(std::move(field));
  result.warped = gather(std::move(warped));
  clock.mark(in_backend ? "results kept in the backend" : "results to the host");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log(LogLevel::Info, "registration done in " + reg::fmt(result.seconds, 4) + " s");
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
namespace {

std::string ensure_prefix_directory(const std::string& prefix) {
  namespace fs = std::filesystem;
  if (prefix.empty()) throw_error(ErrorKind::InvalidArgument, "output prefix", "is empty");
  const fs::path p(prefix);
  const fs::path dir = (prefix.back() == '/') ? p : p.parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw_error(ErrorKind::Io, dir.string(), "cannot create the output directory: " + ec.message());
  }
  return prefix;
}

void ensure_parent(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_error(ErrorKind::Io, dir.string(), "cannot create the output directory: " + ec.message());
}

}  // namespace

RegistrationOutputs write_registration_outputs(const RegistrationResult& result,
                                               const std::string& output_prefix,
                                               const std::string& warped_path,
                                               const std::string& warp_extension,
                                               const Partition* partition) {
  if (warp_extension != ".nii.gz" && warp_extension != ".nii" && warp_extension != ".zarr")
    throw_error(ErrorKind::InvalidArgument, output_prefix,
                "the warp extension must be .nii.gz, .nii or .zarr, got '" + warp_extension + "'");
  const std::string prefix = ensure_prefix_directory(output_prefix);
  RegistrationOutputs out;
  // ITK's parameterisation: y = M (x - c) + t + c, so t = offset - c + M c.
  const Mat3d& m = result.affine.matrix;
  const Vec3d c = result.center;
  const Vec3d t = result.affine.offset - c + m * c;
  out.affine = prefix + "0GenericAffine.mat";
  const Partition& part = partition != nullptr ? *partition : single_process();
  if (part.rank() == 0) write_affine_transform(out.affine, m, t, c);
  if (!warped_path.empty()) ensure_parent(warped_path);
  if (part.size() > 1) {
    // Every process writes its planes of each image (collective writes, one file after the
    // other in the same order everywhere: the processes' communicator is driven by one thread).
    if (!result.warp.empty()) {
      out.warp = prefix + "1Warp" + warp_extension;
      write_sharded_displacement_field(out.warp, result.warp, part);
      if (!result.inverse_warp.empty()) {
        out.inverse_warp = prefix + "1InverseWarp" + warp_extension;
        write_sharded_displacement_field(out.inverse_warp, result.inverse_warp, part);
      }
    }
    if (!warped_path.empty()) {
      out.warped = warped_path;
      write_sharded_image(warped_path, result.warped, part);
    }
    return out;
  }
  // The images are written concurrently: their gzip members (deflated or stored, docs/io.md)
  // dominate the time of a GPU registration's command, and the files are independent (each goes
  // through its own temporary and rename). The first failure is rethrown once all have finished.
  std::vector<std::future<void>> writes;
  if (!result.warp.empty()) {
    out.warp = prefix + "1Warp" + warp_extension;
    writes.push_back(std::async(std::launch::async, [&] { write_displacement_field(out.warp, result.warp); }));
    if (!result.inverse_warp.empty()) {
      out.inverse_warp = prefix + "1InverseWarp" + warp_extension;
      writes.push_back(std::async(std::launch::async,
                                  [&] { write_displacement_field(out.inverse_warp, result.inverse_warp); }));
    }
  }
  if (!warped_path.empty()) {
    out.warped = warped_path;
    writes.push_back(std::async(std::launch::async, [&] { write_image(warped_path, result.warped); }));
  }
  std::exception_ptr first;
  for (std::future<void>& w : writes) {
    try {
      w.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
  return out;
}

namespace {

/// check_output_path for every file register_files will write.
void check_registration_outputs(const RegistrationParams& params, const RegistrationFiles& files) {
  if (files.warp_extension != ".nii.gz" && files.warp_extension != ".nii" && files.warp_extension != ".zarr")
    throw_error(ErrorKind::InvalidArgument, files.output_prefix,
                "the warp extension must be .nii.gz, .nii or .zarr, got '" + files.warp_extension + "'");
  const std::string prefix = ensure_prefix_directory(files.output_prefix);
  check_output_path(prefix + "0GenericAffine.mat", OutputKind::Transform);
  const bool deformable = std::any_of(params.stages.begin(), params.stages.end(),
                                      [](const StageParams& s) { return !is_linear(s.transform); });
  if (deformable) check_output_path(prefix + "1Warp" + files.warp_extension, OutputKind::Image);
  for (const std::string* image : {&files.warped, &files.inverse_warped})
    if (!image->empty()) check_output_path(*image, OutputKind::Image);
  if (!files.qc_picture.empty()) check_output_path(files.qc_picture, OutputKind::Png);
}

/// The QC picture of the fixed image (read again: this process's planes and the one above) and
/// the warped image (the backend's planes of the result; fetched from the next process under a
/// partition), written by rank 0. Collective under a partition.
void write_qc_picture_for_result(const std::string& path, const std::string& fixed_path, const Volume<float>& warped,
                         const Partition& part) {
  const Box planes = qc_picture_planes(read_image_header(fixed_path).geometry, part);
  Volume<float> fixed_planes, fetched;
  if (planes.voxel_count() > 0) fixed_planes = std::move(read_image_slab(fixed_path, planes.lo.z, planes.size.z).voxels);
  const Volume<float>* warped_planes = &warped;  // one process: the whole warped image
  if (part.size() > 1) {
    fetched = part.fetch(warped, planes.voxel_count() > 0 ? planes : Box{});
    warped_planes = &fetched;
  }
  if (!warped_planes->empty() && warped_planes->space() != MemorySpace::Host) {
    fetched = warped_planes->to(MemorySpace::Host);
    warped_planes = &fetched;
  }
  const QcPicture picture = make_qc_picture(fixed_planes, *warped_planes, QcOptions{}, part);
  if (part.rank() != 0) return;
  ensure_parent(path);
  write_png(path, picture);
}

}  // namespace

namespace {

Volume<float> apply_transforms_on(const Volume<float>& moving, const Geometry& reference, const Box& owned,
                                  const std::vector<TransformEntry>& transforms, Interpolation interpolation,
                                  DeviceChoice device, float default_value);

/// The registration's images must not hold NaN: one NaN voxel turns the metrics' sums into NaN,
/// and the optimiser then reports an overflow that names neither file nor voxel. (Infinite
/// voxels are refused by every read.) Each process checks the planes it read.
void require_no_nan(const Volume<float>& v, const std::string& path) {
  const index_t n = v.voxel_count();
  for (index_t e = 0; e < n; ++e) {
    if (!std::isnan(v.data()[e])) continue;
    const Index3 size = v.box().size;
    const index_t i = e % size.x, j = e / size.x % size.y, k = v.box().lo.z + e / (size.x * size.y);
    throw_error(ErrorKind::InvalidInput, path,
                "voxel (" + std::to_string(i) + ", " + std::to_string(j) + ", " + std::to_string(k) +
                    ") is NaN: registration needs finite intensities (give the region to use with a mask, "
                    "and replace NaN by a value, e.g. 0)");
  }
}

/// This process's planes (part.owned of the moving grid) of the inverse-warped image: the fixed
/// image sampled at y + w(y), y = A^-1(x), for the points x of those planes. Under a partition it
/// fetches the planes of the inverse warp w that the points y reach and reads the planes of the
/// fixed image that y + w(y) reach (|w| at most its global maximum norm), so that every sample is
/// the one process's, bit for bit; one process uses `whole_fixed` and the whole warp.
Volume<float> inverse_warped_planes(const RegistrationResult& result, const std::string& fixed_path,
                                    const Volume<float>& whole_fixed, const Geometry& moving_grid,
                                    DeviceChoice device, const Partition& part) {
  const Geometry& fixed_grid = whole_fixed.geometry();
  const Box owned = part.owned(moving_grid.size);
  const Affined to_fixed = invert_affine(result.affine);
  std::vector<TransformEntry> chain;
  TransformEntry a;
  a.affine = to_fixed;
  chain.push_back(a);
  TransformEntry f;
  f.is_field = true;
  Volume<float> field_store;
  if (part.size() == 1) {
    if (!result.inverse_warp.empty()) {
      f.field = &result.inverse_warp;
      if (result.inverse_warp.space() != MemorySpace::Host) {
        field_store = result.inverse_warp.to(MemorySpace::Host);
        f.field = &field_store;
      }
      chain.push_back(f);
    }
    return apply_transforms_on(whole_fixed, moving_grid, owned, chain, Interpolation::Linear, device, 0.0f);
  }
  // The fixed-index z range of A^-1 over the corners of the owned planes (z is affine in the point).
  double z_lo = 1e300, z_hi = -1e300;
  const Affined corner_map =
      compose(fixed_grid.physical_to_index_map(), compose(to_fixed, moving_grid.index_to_physical_map()));
  for (int c = 0; c < 8; ++c) {
    const Vec3d corner{(c & 1) ? double(moving_grid.size.x - 1) : 0.0, (c & 2) ? double(moving_grid.size.y - 1) : 0.0,
                       double((c & 4) ? owned.hi().z - 1 : owned.lo.z)};
    const double z = (corner_map.matrix * corner + corner_map.offset).z;
    z_lo = std::min(z_lo, z);
    z_hi = std::max(z_hi, z);
  }
  const bool has_field = part.max(result.inverse_warp.empty() ? 0.0 : 1.0) > 0;
  const Context ctx = choose_backend(device, "inverse-warped image");
  const double reach_mm =
      has_field ? reg::global_max_norm(ctx, part, result.inverse_warp, part.owned(fixed_grid.size)) : 0.0;
  const double reach = reach_mm / std::min({fixed_grid.spacing.x, fixed_grid.spacing.y, fixed_grid.spacing.z});
  // Planes [floor(lo) - 2, floor(hi) + 2] clipped to the grid (the linear taps and a margin for
  // float rounding); none when the range misses the grid or this process owns no planes.
  auto planes = [&](double lo, double hi) {
    const index_t first = std::max<index_t>(0, index_t(std::floor(std::max(lo, -4.0))) - 2);
    const index_t end = std::min<index_t>(fixed_grid.size.z, index_t(std::floor(std::min(hi, 1e15))) + 3);
    return owned.voxel_count() > 0 && first < end
               ? Box{{0, 0, first}, {fixed_grid.size.x, fixed_grid.size.y, end - first}}
               : Box{};
  };
  if (has_field) {
    field_store = to_host(part.fetch(result.inverse_warp, planes(z_lo, z_hi)));
    f.field = &field_store;
    chain.push_back(f);
  }
  const Box image_planes = planes(z_lo - reach, z_hi + reach);
  if (owned.voxel_count() == 0 || image_planes.voxel_count() == 0 || (has_field && field_store.empty())) {
    // Nothing of the fixed grid is reached: the samples are all 0 (ITK's default outside).
    Volume<float> zeros(moving_grid, owned, 1, MemorySpace::Host);
    if (zeros.voxel_count() > 0) zeros.fill(0.0f);
    return zeros;
  }
  const Image fixed = read_image_slab(fixed_path, image_planes.lo.z, image_planes.size.z);
  return apply_transforms_on(fixed.voxels, moving_grid, owned, chain, Interpolation::Linear, device, 0.0f);
}

}  // namespace

RegistrationResult register_files(const RegistrationParams& params_in, const RegistrationFiles& files,
                                  RegistrationOutputs* written, const Partition* partition) {
  RegistrationParams params = params_in;
  params.validate();
  if (files.output_prefix.empty())
    throw_error(ErrorKind::InvalidArgument, "output prefix", "no output prefix given");
  // How to repeat this run (register_command.hpp); parameters set through the API may hold more
  // than the command line can say, and the line says so.
  log(LogLevel::Info, "command: " + format_register_command(params_in, files) +
                          (register_command_reproduces(params_in, files)
                               ? std::string()
                               : " (not exact: the parameters hold settings that no option sets)"));
  // Every process reads only the planes it needs (one process: the whole images).
  const Partition& part = partition != nullptr ? *partition : single_process();
  // The outputs can be written (names, formats, directories) before hours of work, not after.
  if (part.rank() == 0) check_registration_outputs(params, files);
  PhaseClock clock;
  // The CUDA context is created while the inputs are read (joined before the registration).
  std::future<void> context =
      params.device != DeviceChoice::Cpu ? start_cuda_context() : std::future<void>();
  const Geometry fixed_grid = read_image_header(files.fixed).geometry;  // errors name the fixed first
  const Geometry moving_grid = read_image_header(files.moving).geometry;
  reg::require_same_inputs(part, {files.fixed, files.moving, files.fixed_mask, files.moving_mask,
                                  files.initial_transform});
  const InputPlanes planes = registration_input_planes(params, fixed_grid, moving_grid, part);
  auto read = [&](const std::string& path, const Box& p) {
    return part.size() == 1 ? read_image(path) : read_image_slab(path, p.lo.z, p.size.z);
  };
  const Image fixed = read(files.fixed, planes.fixed);
  const Image moving = read(files.moving, planes.moving);
  Image fixed_mask, moving_mask;
  if (!files.fixed_mask.empty()) fixed_mask = read(files.fixed_mask, planes.fixed);
  if (!files.moving_mask.empty()) moving_mask = read(files.moving_mask, planes.moving);
  if (!files.initial_transform.empty()) {
    Affined a = read_affine_transform(files.initial_transform).affine();
    if (files.invert_initial_transform) a = inverse_of_file_affine(a, files.initial_transform);
    params.initial.type = InitialTransformType::Given;
    params.initial.affine = a;
  }
  // Masks must be on their image's grid; name the file in the message.
  auto mask_check = [](const Image& mask, const Image& image, const std::string& path) {
    if (!mask.voxels.empty() && !mask.voxels.geometry().equals(image.voxels.geometry(), 1e-4))
      throw_error(ErrorKind::InvalidInput, path, "the mask is not on its image's grid");
  };
  mask_check(fixed_mask, fixed, files.fixed_mask);
  mask_check(moving_mask, moving, files.moving_mask);
  require_no_nan(fixed.voxels, files.fixed);
  require_no_nan(moving.voxels, files.moving);
  if (context.valid()) context.get();
  clock.mark("read inputs");

  RegistrationResult result =
      register_images_to(ResultMemory::Backend, params, fixed.voxels, moving.voxels,
                         fixed_mask.voxels.empty() ? nullptr : &fixed_mask.voxels,
                         moving_mask.voxels.empty() ? nullptr : &moving_mask.voxels, partition);
  clock.mark("registration");
  OutputSet set;  // all of them or none (joins the caller's set, if one is open)
  const bool qc = !files.qc_picture.empty() && part.max(result.warped.empty() ? 0.0 : 1.0) > 0;
  if (!files.qc_picture.empty() && !qc && part.rank() == 0)
    log(LogLevel::Warning, "no warped image: the QC picture " + files.qc_picture + " is not written");
  auto inverse_warped = [&] {
    // The fixed image on the moving grid (antsApplyTransforms -t [affine,1] -t InverseWarp),
    // each process on its planes of the moving grid.
    ensure_parent(files.inverse_warped);
    const Volume<float> inv =
        inverse_warped_planes(result, files.fixed, fixed.voxels, moving_grid, params.device, part);
    if (part.size() > 1)
      write_sharded_image(files.inverse_warped, inv, part);
    else
      write_image(files.inverse_warped, inv);
  };
  auto qc_picture = [&] { write_qc_picture_for_result(files.qc_picture, files.fixed, result.warped, part); };
  // One process: the inverse-warped image and the QC picture are made and written while the
  // warps and the warped image are written (each file through its own temporary; the set renames
  // them together). Under a partition they are collective and follow the writes, in the same
  // order on every process. The tasks are declared after `result`, which they read: a failure
  // of the writes waits for them before the stack unwinds.
  std::future<void> inverse_task, qc_task;
  if (part.size() == 1) {
    if (!files.inverse_warped.empty()) inverse_task = std::async(std::launch::async, inverse_warped);
    if (qc) qc_task = std::async(std::launch::async, qc_picture);
  }
  // Each process writes its own planes of the images (one process: all of them).
  RegistrationOutputs out = write_registration_outputs(result, files.output_prefix, files.warped,
                                                       files.warp_extension, partition);
  clock.mark("write outputs");
  if (!files.inverse_warped.empty()) {
    if (inverse_task.valid())
      inverse_task.get();
    else
      inverse_warped();
    out.inverse_warped = files.inverse_warped;
    clock.mark("inverse-warped image");
  }
  if (qc) {
    if (qc_task.valid())
      qc_task.get();
    else
      qc_picture();
    if (part.rank() == 0) out.qc_picture = files.qc_picture;
    clock.mark("QC picture");
  }
  if (part.rank() != 0) {
    if (written) *written = out;
    return result;
  }
  set.commit();
  clock.mark("outputs flushed and renamed");
  if (written) *written = out;
  return result;
}

// ---------------------------------------------------------------------------------------------
namespace {

/// apply_transforms on `owned` of the reference grid, from volumes that may hold only planes of
/// their grids (the moving image and the fields must hold every plane the samples reach: taps
/// outside a volume's planes read 0). The result has box `owned`, in host memory.
Volume<float> apply_transforms_on(const Volume<float>& moving, const Geometry& reference, const Box& owned,
                                  const std::vector<TransformEntry>& transforms, Interpolation interpolation,
                                  DeviceChoice device, float default_value) {
  const Context ctx = choose_backend(device, "apply_transforms");
  // The map so far is x -> P(x + d(x)) (d empty: 0). An affine B makes it B o P; a field u makes
  // it x -> y + u(y), y = P(x + d(x)): one composed field on the reference grid, P = identity.
  Affined pending = Affined::identity();
  Volume<float> d;
  for (std::size_t k = 0; k < transforms.size(); ++k) {
    const TransformEntry& t = transforms[k];
    if (!t.is_field) {
      pending = compose(t.affine, pending);
      continue;
    }
    if (t.field == nullptr || t.field->empty() || t.field->components() != 3 ||
        t.field->space() != MemorySpace::Host)
      throw_error(ErrorKind::InvalidArgument, "apply_transforms",
                  "transform " + std::to_string(k + 1) + " is not a 3-component host field");
    const Geometry& ug = t.field->geometry();
    if (d.empty() && is_identity(pending) && ug.equals(reference)) {
      d = t.field->to(ctx.memory_space());
      continue;
    }
    Volume<float> u_store;
    const Volume<float>* u = in_backend(ctx, t.field, u_store);
    Volume<float> next(reference, owned, 3, ctx.memory_space());
    // A written field is a transform of points: ITK's rule outside its grid (zero displacement
    // beyond the last half voxel), so that this matches antsApplyTransforms there too.
    compose_fields(ctx, d.empty() ? VolumeView<const float>{} : d.view(), reference, pending, u->view(),
                   ug, next.view(), owned, Boundary::FieldTransform);
    d = std::move(next);
    pending = Affined::identity();
  }
  Volume<float> m_store;
  const Volume<float>* m = in_backend(ctx, &moving, m_store);
  WarpInputs w;
  w.moving = m->view();
  w.moving_geometry = moving.geometry();
  w.fixed_geometry = reference;
  w.affine = pending;
  if (!d.empty()) w.displacement = d.view();
  w.interpolation = interpolation;
  w.boundary = Boundary::FieldTransform;  // ITK's resampler: IsInsideBuffer, else the default
  w.outside_value = default_value;
  Volume<float> out(reference, owned, 1, ctx.memory_space());
  warp(ctx, w, out.view(), owned);
  return to_host(std::move(out));
}

}  // namespace

Volume<float> apply_transforms(const Volume<float>& moving, const Geometry& reference,
                               const std::vector<TransformEntry>& transforms,
                               Interpolation interpolation, DeviceChoice device, float default_value) {
  check_image(moving, "apply_transforms input");
  reference.validate("apply_transforms reference");
  return apply_transforms_on(moving, reference, whole(reference), transforms, interpolation, device, default_value);
}

namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_transform_file(const std::string& path) {
  for (const char* ext : {".mat", ".txt", ".tfm", ".h5", ".hdf5"})
    if (has_suffix(path, ext)) return true;
  return false;
}

}  // namespace

void apply_transform_files(const ApplyFiles& files) {
  if (files.input.empty()) throw_error(ErrorKind::InvalidArgument, "-i", "no input image given");
  if (files.reference.empty()) throw_error(ErrorKind::InvalidArgument, "-r", "no reference image given");
  if (files.output.empty()) throw_error(ErrorKind::InvalidArgument, "-o", "no output image given");
  check_output_path(files.output, OutputKind::Image);  // before the work
  const Image input = read_image(files.input);
  const ImageHeader ref = read_image_header(files.reference);
  // Fields live in a list (stable addresses) that the chain points into.
  std::list<Volume<float>> fields;
  std::vector<TransformEntry> chain;
  for (std::size_t k = 0; k < files.transforms.size(); ++k) {
    const std::string& path = files.transforms[k];
    const bool invert = k < files.inverse.size() && files.inverse[k];
    if (!is_transform_file(path)) {
      if (invert)
        throw_error(ErrorKind::InvalidArgument, path,
                    "a displacement field cannot be inverted on the fly: use the inverse warp file "
                    "(prefix1InverseWarp.nii.gz)");
      fields.push_back(read_displacement_field(path));
      TransformEntry e;
      e.is_field = true;
      e.field = &fields.back();
      chain.push_back(e);
      continue;
    }
    // One affine, or a composite (e.g. prefixComposite.h5) unrolled into its transforms.
    std::vector<ChainTransform> steps = read_transform_chain(path);
    if (invert) {
      for (const ChainTransform& s : steps)
        if (s.is_field)
          throw_error(ErrorKind::InvalidArgument, path,
                      "holds a displacement field, which cannot be inverted on the fly: use the "
                      "inverse composite (prefixInverseComposite.h5)");
      std::reverse(steps.begin(), steps.end());
    }
    for (ChainTransform& s : steps) {
      TransformEntry e;
      if (s.is_field) {
        fields.push_back(std::move(s.field));
        e.is_field = true;
        e.field = &fields.back();
      } else {
        e.affine = invert ? inverse_of_file_affine(s.affine, path) : s.affine;
      }
      chain.push_back(e);
    }
  }
  if (!std::isfinite(files.default_value))
    throw_error(ErrorKind::InvalidArgument, "-f", "the default value must be a finite number");
  const Volume<float> out = apply_transforms(input.voxels, ref.geometry, chain, files.interpolation,
                                             files.device, float(files.default_value));
  ensure_parent(files.output);
  if (files.interpolation == Interpolation::Linear || files.interpolation == Interpolation::BSpline)
    write_image(files.output, out, PixelType::Float32);
  else
    write_image(files.output, out, input.pixel_type, IntegerConversion::RoundAndClamp);
}

}  // namespace gigareg
