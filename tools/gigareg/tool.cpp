#include "tool.hpp"

#include <algorithm>
#include <optional>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

namespace gigareg::cli {

namespace {
/// "auto" or an integer 0-12 (no sign, no spaces): the level; anything else: none.
std::optional<int> parse_compression_level(const std::string& text) {
  if (text == "auto") return kCompressionAuto;
  if (text.empty() || text.size() > 2 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const int level = std::stoi(text);
  return level <= 12 ? std::optional<int>(level) : std::nullopt;
}
}  // namespace

Tool::Tool(RegisterHooks register_hooks)
    : app_("gigareg: registration of 3-D medical images up to gigavoxel size"),
      compression_(compression_level() == kCompressionAuto ? "auto" : std::to_string(compression_level())) {
  app_.set_version_flag("--version", std::string("gigareg ") + GIGAREG_VERSION);
  app_.require_subcommand(1);
  // Options every command takes (given after the command's name, as ANTs users write them).
  auto add = [&](auto adder, const char* name, const char* description) {
    CLI::App* sub = app_.add_subcommand(name, description);
    commands_[sub] = adder(*sub);
    sub->add_option("--compression-level", compression_,
                    "deflate level of every .nii.gz written: auto (the default: level 1, but members that "
                    "deflate would shrink by less than 10%, such as float warps, stored), or 0 (stored) to 12 "
                    "(smallest, slowest) for every member (docs/io.md); also GIGAREG_COMPRESSION_LEVEL")
        ->check(CLI::Validator(
            [](std::string& text) {
              return parse_compression_level(text) ? std::string() : "'" + text + "' is not auto or a level 0-12";
            },
            "auto|0-12"))
        ->envname("GIGAREG_COMPRESSION_LEVEL");
    sub->add_option("--zarr-chunk", zarr_chunk_,
                    "chunk of every .zarr written: N (a cube, default 64) or XxYxZ voxels "
                    "(docs/zarr.md)");
    sub->add_option("--zarr-codec", zarr_codec_,
                    "compression of every .zarr written: zstd (default), lz4 or none, with an "
                    "optional Blosc level: zstd:5 (default level 1)");
  };
  add(add_info_command, "info", "Print an image's header: geometry and pixel type");
  add(add_demo_command, "demo", "Make a phantom pair from Colin27 with a known warp and report on it");
  add([&register_hooks](CLI::App& sub) { return add_register_command(sub, register_hooks); },
      "register", "Register a moving image to a fixed one (antsRegistration's options, or --preset)");
  add(add_apply_command, "apply", "Resample an image through transforms (antsApplyTransforms' options)");
  add(add_jacobian_command, "jacobian",
      "Jacobian determinant of a displacement field, and the fraction of non-positive values");
  add(add_invert_command, "invert", "Inverse of a displacement field by fixed-point iteration");
  add(add_phantom_command, "phantom",
      "Make a (large) registration pair with a known transform from a real image");
  add(add_convert_command, "convert",
      "Copy an image or displacement field between .nii, .nii.gz and .zarr (OME-Zarr), "
      "optionally with an NGFF pyramid");
}

void Tool::parse(const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  app_.parse(reversed);
}

int Tool::run() {
  set_compression_level(*parse_compression_level(compression_));
  ZarrOptions zarr;
  zarr.chunk = parse_zarr_chunk(zarr_chunk_);
  const auto colon = zarr_codec_.find(':');
  zarr.codec = zarr_codec_.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string level = zarr_codec_.substr(colon + 1);
    if (level.size() != 1 || level[0] < '0' || level[0] > '9')
      throw Error(ErrorKind::InvalidArgument, "--zarr-codec",
                  "the level after ':' must be 0-9, got '" + level + "'");
    zarr.level = level[0] - '0';
  }
  set_zarr_options(zarr);
  for (auto& [sub, command] : commands_)
    if (sub->parsed()) return command();
  return 0;
}

}  // namespace gigareg::cli
