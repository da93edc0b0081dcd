#include "tool.hpp"

#include <algorithm>

#include "gigareg/config.hpp"
#include "gigareg/io.hpp"

namespace gigareg::cli {

Tool::Tool(RegisterHooks register_hooks)
    : app_("gigareg: registration of 3-D medical images up to gigavoxel size"),
      compression_(compression_level()) {
  app_.set_version_flag("--version", std::string("gigareg ") + GIGAREG_VERSION);
  app_.require_subcommand(1);
  // Options every command takes (given after the command's name, as ANTs users write them).
  auto add = [&](auto adder, const char* name, const char* description) {
    CLI::App* sub = app_.add_subcommand(name, description);
    commands_[sub] = adder(*sub);
    sub->add_option("--compression-level", compression_,
                    "deflate level of every .nii.gz written: 0 (stored) to 12 (smallest, slowest); "
                    "1, the default, is the fastest (docs/io.md); also GIGAREG_COMPRESSION_LEVEL")
        ->check(CLI::Range(0, 12))
        ->envname("GIGAREG_COMPRESSION_LEVEL");
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
}

void Tool::parse(const std::vector<std::string>& args) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  app_.parse(reversed);
}

int Tool::run() {
  set_compression_level(compression_);
  for (auto& [sub, command] : commands_)
    if (sub->parsed()) return command();
  return 0;
}

}  // namespace gigareg::cli
