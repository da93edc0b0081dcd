// gigareg apply: antsApplyTransforms' command line. The first -t is applied first to a point of
// the reference grid, so `-t PREFIX1Warp.nii.gz -t PREFIX0GenericAffine.mat` maps x to
// A(x + u(x)), exactly what gigareg register resampled.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "gigareg/error.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::cli {
namespace {

struct ApplyOptions {
  int dimensionality = 3;
  std::string input, reference, output;
  std::vector<std::string> transforms;
  std::string interpolation = "Linear";
  int input_type = 0;
  double default_value = 0;
  int float_precision = 0;
  std::string device = "cpu";
  CLI::Option* verbose = nullptr;
};

int run_apply(const ApplyOptions& o) {
  if (o.dimensionality != 3) throw_error(ErrorKind::InvalidArgument, "-d", "only 3-D images are supported");
  if (o.input_type != 0)
    throw_error(ErrorKind::InvalidArgument, "-e", "only scalar images (0) are supported");
  ApplyFiles files;
  files.input = o.input;
  files.reference = o.reference;
  files.output = o.output;
  files.interpolation = ants::for_option("-n/--interpolation", [&] { return ants::parse_interpolation(o.interpolation); });
  files.device = ants::for_option("--device", [&] { return ants::parse_device(o.device); });
  files.default_value = o.default_value;
  for (const std::string& t : o.transforms) {
    const ants::TransformFileSpec s = ants::for_option("-t/--transform", [&] { return ants::parse_transform_file(t); });
    if (s.file == "identity" || s.file == "Identity") continue;
    files.transforms.push_back(s.file);
    files.inverse.push_back(s.invert);
  }
  apply_transform_files(files);
  if (o.verbose && o.verbose->count() > 0)
    std::printf("gigareg apply: wrote %s (%zu transform(s))\n", o.output.c_str(), files.transforms.size());
  return 0;
}

}  // namespace

Command add_apply_command(CLI::App& app) {
  auto o = std::make_shared<ApplyOptions>();
  app.footer(
      "Example (what gigareg register resampled):\n"
      "  gigareg apply -i moving.nii.gz -r fixed.nii.gz -o warped.nii.gz \\\n"
      "    -t out/reg_1Warp.nii.gz -t out/reg_0GenericAffine.mat\n"
      "The fixed image into the moving grid:\n"
      "  gigareg apply -i fixed.nii.gz -r moving.nii.gz -o inverse.nii.gz \\\n"
      "    -t [out/reg_0GenericAffine.mat,1] -t out/reg_1InverseWarp.nii.gz");
  app.add_option("-d,--dimensionality", o->dimensionality, "image dimension (3)")->capture_default_str();
  app.add_option("-i,--input", o->input, "the image to resample")->required();
  app.add_option("-r,--reference-image", o->reference, "the grid of the output")->required();
  app.add_option("-o,--output", o->output, "the output image")->required();
  app.add_option("-t,--transform", o->transforms,
                 "a transform: affine file (.mat, .txt, .tfm, .h5), [affine,1] for its inverse, or a "
                 "displacement field (.nii.gz); repeat it: the FIRST one is applied first to a "
                 "reference point (antsApplyTransforms' order)")
      ->expected(1)
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-n,--interpolation", o->interpolation,
                 "Linear, NearestNeighbor, GenericLabel or BSpline[3] (BSpline: cpu backend)")
      ->capture_default_str();
  app.add_option("-e,--input-image-type", o->input_type, "0: scalar (the only type supported)");
  app.add_option("-f,--default-value", o->default_value,
                 "value of output voxels that map outside the input (default 0)");
  app.add_option("--float", o->float_precision, "accepted for ANTs compatibility");
  app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
  o->verbose = app.add_option("-v,--verbose", "print what was written")->expected(0, 1);
  return [o] { return run_apply(*o); };
}

}  // namespace gigareg::cli
