// The smallest complete program on the gigareg library: read two images, register the moving one
// to the fixed one with a preset, write what antsRegistration writes. Build it against an
// installed gigareg with find_package(gigareg) and target_link_libraries(... gigareg::gigareg).
//
//   register_pair fixed.nii.gz moving.nii.gz rigid|affine|greedy|syn out/pair_
//
// writes out/pair_0GenericAffine.mat, out/pair_1Warp.nii.gz and out/pair_1InverseWarp.nii.gz
// (deformable presets) and out/pair_Warped.nii.gz, then prints each level's loss.
#include <cstdio>
#include <string>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/registration.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s fixed moving rigid|affine|greedy|syn output_prefix\n", argv[0]);
    return 2;
  }
  const std::string prefix = argv[4];
  try {
    gigareg::RegistrationParams params = gigareg::registration_preset(argv[3]);
    params.device = gigareg::DeviceChoice::Auto;  // CUDA when there is a GPU, else the CPU
    const gigareg::Image fixed = gigareg::read_image(argv[1]);
    const gigareg::Image moving = gigareg::read_image(argv[2]);
    const gigareg::RegistrationResult result =
        gigareg::register_images(params, fixed.voxels, moving.voxels);
    const gigareg::RegistrationOutputs written =
        gigareg::write_registration_outputs(result, prefix, prefix + "Warped.nii.gz");
    for (const gigareg::LevelReport& level : result.levels)
      std::printf("stage %d level %d: %d iterations, loss %.6g -> %.6g\n", level.stage + 1,
                  level.level + 1, level.iterations, level.initial_loss, level.final_loss);
    for (const std::string* path : {&written.affine, &written.warp, &written.inverse_warp, &written.warped})
      if (!path->empty()) std::printf("wrote %s\n", path->c_str());
  } catch (const gigareg::Error& e) {
    std::fprintf(stderr, "register_pair: %s\n", e.what());
    return 1;
  }
  return 0;
}
