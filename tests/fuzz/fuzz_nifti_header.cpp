// libFuzzer target: the NIfTI header path of every image read (gigareg's header checks, then ITK's
// NIfTI reader) and, for small images, the voxel data (gigareg's direct reader). The first byte
// picks the name: .nii or .nii.gz (the content decides whether it is gzip either way).
#include <cstdint>
#include <new>
#include <string>

#include "fuzz_util.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string path = gigareg::fuzz::write_input((data[0] & 1) ? "in.nii.gz" : "in.nii", data + 1, size - 1);
  try {
    const gigareg::ImageHeader h = gigareg::read_image_header(path);
    // Voxel data only for small grids: the fuzzer looks for crashes, not for memory limits.
    if (h.geometry.voxel_count() * h.components <= (1 << 16)) {
      if (h.components == 3)
        (void)gigareg::read_displacement_field(path);
      else
        (void)gigareg::read_image(path);
    }
  } catch (const gigareg::Error&) {
  }
  return 0;
}
