// gigareg phantom: a large registration pair with a known transform, made from a real image.
//
// The fixed image is the source upsampled by an integer factor per axis (trilinear; the same
// physical extent, spacing / factor), the moving image is the source sampled at T(x) = A(x + u(x))
// on that same fine grid, with u a smooth random warp and A a mild affine (gigareg/phantom.hpp),
// optionally with its intensities remapped through a non-monotonic curve so that the pair is
// multimodal (a task for Mattes MI). This is how the multi-GPU benchmarks get gigavoxel pairs
// with ground truth: Colin27 at 0.5 mm upsampled 5x per axis is a 0.1 mm, 4.4 Gvox brain.
//
// Both images are computed straight from the source, z-chunk by z-chunk (the warp on the fine
// grid is resampled per chunk from the source grid), so the only full-size arrays are the two
// outputs: 8 bytes per fine voxel of host memory (plus the pixel-type conversion when writing).
// Outputs are uncompressed .nii by default: each rank of a sharded registration then reads only
// the byte range of its slab.
//
//   PREFIXfixed.nii, PREFIXmoving.nii            the pair (pixel type of the source by default)
//   PREFIXtruth_0GenericAffine.mat, PREFIXtruth_1Warp.nii.gz
//       T as ANTs files: `gigareg apply -i PREFIXfixed.nii -r PREFIXfixed.nii
//       -t PREFIXtruth_1Warp.nii.gz -t PREFIXtruth_0GenericAffine.mat` gives the moving image
//       before the remap (the warp is stored on the source grid: 12 bytes per source voxel).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"

namespace gigareg::cli {
namespace {

struct PhantomOptions {
  std::string input, prefix;
  int upsample = 1;
  double warp_mm = 4.0;
  double wavelength_mm = 50.0;
  std::uint64_t seed = 2026;
  bool affine = true;
  std::string remap = "multimodal";
  std::string pixel_type = "source";
  std::string extension = ".nii";
};

/// The fine grid: `factor` voxels per source voxel along each axis over the same physical extent
/// (the outer faces of the voxels coincide), spacing / factor.
Geometry upsampled_grid(const Geometry& g, int factor) {
  Geometry fine = g;
  const double f = factor;
  Vec3d shift{0, 0, 0};  // in source voxels: fine voxel 0 is centred at source index -(f-1)/(2f)
  for (int a = 0; a < 3; ++a) {
    fine.size[a] = g.size[a] * factor;
    fine.spacing[a] = g.spacing[a] / f;
    shift[a] = -(f - 1.0) / (2.0 * f);
  }
  fine.origin = g.index_to_physical(shift);
  return fine;
}

/// A non-monotonic intensity map of [0, 1] onto [0, 1] (a second "modality"): dark becomes bright
/// and the middle of the range gains a bump, so no monotonic function relates the two images.
float remap_intensity(float v01) {
  const double v = std::clamp(double(v01), 0.0, 1.0);
  const double bump = std::exp(-std::pow((v - 0.45) / 0.12, 2.0));
  return float(0.75 * (1.0 - v) + 0.25 * bump);
}

PixelType output_pixel_type(const std::string& name, PixelType source) {
  if (name == "source") return source;
  if (name == "float32") return PixelType::Float32;
  if (name == "uint8") return PixelType::UInt8;
  if (name == "uint16") return PixelType::UInt16;
  throw_error(ErrorKind::InvalidArgument, "--pixel-type",
              "expected source, float32, uint8 or uint16, got '" + name + "'");
}

int run_phantom(const PhantomOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  if (o.upsample < 1 || o.upsample > 16)
    throw_error(ErrorKind::InvalidArgument, "--upsample", "must be 1..16, got " + std::to_string(o.upsample));
  if (!(o.warp_mm >= 0) || !(o.wavelength_mm > 0))
    throw_error(ErrorKind::InvalidArgument, "--warp-mm/--wavelength-mm", "need warp >= 0 and wavelength > 0");
  if (o.remap != "multimodal" && o.remap != "none")
    throw_error(ErrorKind::InvalidArgument, "--remap", "expected multimodal or none, got '" + o.remap + "'");
  if (o.extension != ".nii" && o.extension != ".nii.gz" && o.extension != ".zarr")
    throw_error(ErrorKind::InvalidArgument, "--extension",
                "expected .nii, .nii.gz or .zarr, got '" + o.extension + "'");
  const Image source = read_image(o.input);
  const Geometry& sg = source.voxels.geometry();
  const PixelType out_type = output_pixel_type(o.pixel_type, source.pixel_type);
  const Geometry fine = upsampled_grid(sg, o.upsample);
  std::printf("gigareg phantom: %s (%s) upsampled %dx: %s, %.2f Gvox\n", o.input.c_str(),
              sg.describe().c_str(), o.upsample, fine.describe().c_str(), double(fine.voxel_count()) * 1e-9);

  // The known transform T(x) = A(x + u(x)); u lives on the source grid.
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = o.warp_mm;
  spec.wavelength_mm = o.wavelength_mm;
  spec.seed = o.seed;
  const Volume<float> u = make_smooth_deformation(sg, spec);
  const Vec3d centre = sg.index_to_physical({0.5 * (sg.size.x - 1), 0.5 * (sg.size.y - 1), 0.5 * (sg.size.z - 1)});
  const Affined affine = o.affine ? make_affine({4, -3, 5}, {1.03, 0.97, 1.02}, {3, -2, 4}, centre)
                                  : Affined::identity();
  // The source range, for the remap (and its inverse scaling).
  float lo = source.voxels.data()[0], hi = lo;
  for (index_t n = 0; n < source.voxels.voxel_count(); ++n) {
    lo = std::min(lo, source.voxels.data()[n]);
    hi = std::max(hi, source.voxels.data()[n]);
  }
  const float range = hi > lo ? hi - lo : 1.0f;

  require_available(std::size_t(fine.voxel_count()) * 2 * sizeof(float), MemorySpace::Host,
                    "the phantom pair (" + fine.describe() + ")");
  Volume<float> fixed(fine), moving(fine);
  const Context ctx = Context::cpu();
  WarpInputs w;
  w.moving = source.voxels.view();
  w.moving_geometry = sg;
  w.fixed_geometry = fine;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::FieldTransform;  // ITK's resampler: antsApplyTransforms reproduces it
  // z-chunks of about 2^26 fine voxels: the warp resampled onto a chunk is 12 bytes per voxel.
  const index_t plane = fine.size.x * fine.size.y;
  const index_t chunk_z = std::max<index_t>(1, (index_t(1) << 26) / plane);
  for (index_t z0 = 0; z0 < fine.size.z; z0 += chunk_z) {
    const Box chunk{{0, 0, z0}, {fine.size.x, fine.size.y, std::min(chunk_z, fine.size.z - z0)}};
    WarpInputs wf = w;
    wf.affine = Affined::identity();
    warp(ctx, wf, fixed.view(), chunk);
    Volume<float> u_chunk(fine, chunk, 3);
    resample_field(ctx, u.view(), sg, fine, u_chunk.view(), chunk, Boundary::Border);
    WarpInputs wm = w;
    wm.affine = affine;
    wm.displacement = u_chunk.view();
    warp(ctx, wm, moving.view(), chunk);
  }
  if (o.remap == "multimodal") {
    float* m = moving.data();
#pragma omp parallel for schedule(static)
    for (index_t n = 0; n < moving.voxel_count(); ++n) m[n] = lo + range * remap_intensity((m[n] - lo) / range);
  }
  const double t_make = std::chrono::duration<double>(clock::now() - t0).count();

  const std::filesystem::path parent = std::filesystem::path(o.prefix + "fixed").parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) throw_error(ErrorKind::Io, parent.string(), "cannot create the output directory: " + ec.message());
  const std::string fixed_path = o.prefix + "fixed" + o.extension;
  const std::string moving_path = o.prefix + "moving" + o.extension;
  // All four files or none: a failure removes the ones already written.
  const std::string affine_path = o.prefix + "truth_0GenericAffine.mat";
  const std::string warp_path = o.prefix + "truth_1Warp.nii.gz";
  try {
    write_image(fixed_path, fixed, out_type, IntegerConversion::RoundAndClamp);
    write_image(moving_path, moving, out_type, IntegerConversion::RoundAndClamp);
    write_affine_transform(affine_path, affine.matrix, affine.offset);
    write_displacement_field(warp_path, u);
  } catch (...) {
    for (const std::string& path : {fixed_path, moving_path, affine_path, warp_path})
      std::filesystem::remove(path, ec);
    throw;
  }
  std::printf("  known transform: moving(x) = %sfixed(A(x + u(x))), u: smooth warp (max %.1f mm, "
              "wavelengths >= %.0f mm, seed %llu)%s\n",
              o.remap == "multimodal" ? "remap(" : "", spec.max_displacement_mm, spec.wavelength_mm,
              (unsigned long long)spec.seed,
              o.affine ? ", A: rotations 4/-3/5 deg, scales 1.03/0.97/1.02, shift 3/-2/4 mm" : ", A = identity");
  std::printf("  wrote %s, %s (%s), %struth_0GenericAffine.mat, %struth_1Warp.nii.gz\n", fixed_path.c_str(),
              moving_path.c_str(), to_string(out_type), o.prefix.c_str(), o.prefix.c_str());
  std::printf("  %.1f s to make, %.1f s in all\n", t_make,
              std::chrono::duration<double>(clock::now() - t0).count());
  return 0;
}

}  // namespace

Command add_phantom_command(CLI::App& app) {
  auto o = std::make_shared<PhantomOptions>();
  app.footer(
      "\nExample (the 0.1 mm brain of the multi-GPU benchmarks, 4.4 Gvox, about 40 GB of memory):\n"
      "  gigareg phantom -i colin27_ch2better_0.5mm.nii.gz --upsample 5 -o big/brain_\n"
      "  mpirun -np 4 gigareg register --device cuda -d 3 -o [big/reg_,big/warped.nii] \\\n"
      "    -t Greedy[0.25,1.5,0.5] -m MI[big/brain_fixed.nii,big/brain_moving.nii,1,32] ...");
  app.add_option("-i,--input", o->input, "the source image (any scalar image ITK reads)")->required();
  app.add_option("-o,--output", o->prefix,
                 "output prefix: PREFIXfixed.nii, PREFIXmoving.nii, PREFIXtruth_0GenericAffine.mat, "
                 "PREFIXtruth_1Warp.nii.gz")
      ->required();
  app.add_option("-u,--upsample", o->upsample, "voxels per source voxel along each axis (1-16)")
      ->capture_default_str();
  app.add_option("--warp-mm", o->warp_mm, "largest displacement of the smooth warp (mm)")->capture_default_str();
  app.add_option("--wavelength-mm", o->wavelength_mm, "shortest wavelength of the warp (mm)")
      ->capture_default_str();
  app.add_option("--seed", o->seed, "seed of the warp")->capture_default_str();
  app.add_option("--affine", o->affine, "1: a mild affine after the warp; 0: none")->capture_default_str();
  app.add_option("--remap", o->remap,
                 "multimodal: the moving intensities through a non-monotonic curve; none: unchanged")
      ->capture_default_str();
  app.add_option("--pixel-type", o->pixel_type, "source, float32, uint8 or uint16")->capture_default_str();
  app.add_option("--extension", o->extension,
                 ".nii (default: ranks read their slabs as byte ranges), .nii.gz or .zarr (ranks read the chunks under their slabs)")
      ->capture_default_str();
  return [o] { return run_phantom(*o); };
}

}  // namespace gigareg::cli
