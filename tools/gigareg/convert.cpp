// gigareg convert IN OUT: an image or displacement field copied between .nii, .nii.gz and .zarr
// (OME-Zarr), values, pixel type and geometry unchanged; with --pyramid, NGFF multiscale levels
// for viewers. The work is the library's convert_image_file.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "gigareg/io.hpp"

namespace gigareg::cli {

Command add_convert_command(CLI::App& app) {
  struct Options {
    std::string input, output;
    ConvertOptions convert;
  };
  auto o = std::make_shared<Options>();
  app.add_option("input", o->input, "image or displacement field (.nii, .nii.gz, .zarr, ...)")->required();
  app.add_option("output", o->output, "output (.nii, .nii.gz, .zarr, .nrrd, .mha)")->required();
  app.add_option("--pyramid", o->convert.pyramid,
                 "extra NGFF pyramid levels in a .zarr output, each halving the grid (0-16; "
                 "default 0): the mean of each 2x2x2 block, or its mode with --labels")
      ->capture_default_str();
  app.add_flag("--labels", o->convert.labels,
               "the image is a label map: pyramid levels take the most frequent label of each "
               "2x2x2 block (ties: the smallest) instead of the mean");
  app.footer(
      "Examples:\n"
      "  gigareg convert brain.nii.gz brain.zarr --pyramid 3\n"
      "  gigareg convert labels.nii.gz labels.zarr --pyramid 3 --labels --zarr-chunk 128\n"
      "  gigareg convert out/reg_1Warp.zarr out/reg_1Warp.nii.gz");
  return [o] {
    convert_image_file(o->input, o->output, o->convert);
    std::printf("gigareg convert: wrote %s\n", o->output.c_str());
    return 0;
  };
}

}  // namespace gigareg::cli
