// libFuzzer target: the transform readers (gigareg's .mat / .txt checks, then ITK's Matlab, text
// and HDF5 readers) as `gigareg apply` and `register -r` use them. The first byte picks the
// extension.
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "gigareg/composite_transform.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const char* const kNames[4] = {"t.mat", "t.txt", "t.tfm", "t.h5"};
  const std::string path = gigareg::fuzz::write_input(kNames[data[0] % 4], data + 1, size - 1);
  try {
    (void)gigareg::read_affine_transform(path);
  } catch (const gigareg::Error&) {
  }
  try {
    (void)gigareg::read_transform_chain(path);
  } catch (const gigareg::Error&) {
  }
  return 0;
}
