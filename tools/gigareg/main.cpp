// gigareg: command-line entry point. Errors from the library (gigareg::Error) name the file or
// option and the problem; they end the program with exit code 1 and leave no partial output.
#include <malloc.h>

#include <cstdio>
#include <map>
#include <string>

#include "commands.hpp"
#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"gigareg: registration of 3-D medical images up to gigavoxel size"};
  app.set_version_flag("--version", std::string("gigareg ") + GIGAREG_VERSION);
  app.require_subcommand(1);
  std::map<CLI::App*, gigareg::cli::Command> commands;
  // Options every command takes (given after the command's name, as ANTs users write them).
  int compression = gigareg::compression_level();
  std::string zarr_chunk = "64", zarr_codec = "zstd";
  auto add = [&](auto adder, const char* name, const char* description) {
    CLI::App* sub = app.add_subcommand(name, description);
    commands[sub] = adder(*sub);
    sub->add_option("--compression-level", compression,
                    "deflate level of every .nii.gz written: 0 (stored) to 12 (smallest, slowest); "
                    "1, the default, is the fastest (docs/io.md); also GIGAREG_COMPRESSION_LEVEL")
        ->check(CLI::Range(0, 12))
        ->envname("GIGAREG_COMPRESSION_LEVEL");
    sub->add_option("--zarr-chunk", zarr_chunk,
                    "chunk of every .zarr written: N (a cube, default 64) or XxYxZ voxels "
                    "(docs/zarr.md)");
    sub->add_option("--zarr-codec", zarr_codec,
                    "compression of every .zarr written: zstd (default), lz4 or none, with an "
                    "optional Blosc level: zstd:5 (default level 1)");
  };
  add(gigareg::cli::add_info_command, "info", "Print an image's header: geometry and pixel type");
  add(gigareg::cli::add_demo_command, "demo",
      "Make a phantom pair from Colin27 with a known warp and report on it");
  add(gigareg::cli::add_register_command, "register",
      "Register a moving image to a fixed one (antsRegistration's options, or --preset)");
  add(gigareg::cli::add_apply_command, "apply",
      "Resample an image through transforms (antsApplyTransforms' options)");
  add(gigareg::cli::add_jacobian_command, "jacobian",
      "Jacobian determinant of a displacement field, and the fraction of non-positive values");
  add(gigareg::cli::add_invert_command, "invert",
      "Inverse of a displacement field by fixed-point iteration");
  add(gigareg::cli::add_phantom_command, "phantom",
      "Make a (large) registration pair with a known transform from a real image");
  add(gigareg::cli::add_convert_command, "convert",
      "Copy an image or displacement field between .nii, .nii.gz and .zarr (OME-Zarr), "
      "optionally with an NGFF pyramid");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Buffers of 1 MiB and more are mapped and go back to the system when freed. glibc otherwise
  // raises its mmap threshold (up to 32 MiB) after the first large free, and the slab-sized
  // buffers of a distributed run then stay resident after they are freed: +46 MB on rank 0 of 4
  // of a 256^3 registration (docs/io.md), a sixth of its peak.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Ctrl-C, or mpirun ending the job: no hidden temporary of a write in progress stays behind.
  gigareg::install_temporary_cleanup_handlers();
  try {
    gigareg::set_compression_level(compression);
    gigareg::ZarrOptions zarr;
    zarr.chunk = gigareg::parse_zarr_chunk(zarr_chunk);
    const auto colon = zarr_codec.find(':');
    zarr.codec = zarr_codec.substr(0, colon);
    if (colon != std::string::npos) {
      const std::string level = zarr_codec.substr(colon + 1);
      if (level.size() != 1 || level[0] < '0' || level[0] > '9')
        throw gigareg::Error(gigareg::ErrorKind::InvalidArgument, "--zarr-codec",
                             "the level after ':' must be 0-9, got '" + level + "'");
      zarr.level = level[0] - '0';
    }
    gigareg::set_zarr_options(zarr);
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const gigareg::Error& e) {
    std::fprintf(stderr, "gigareg: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gigareg: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
