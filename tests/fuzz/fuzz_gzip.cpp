// libFuzzer target: gigareg's gzip decoding and completeness checks (block members with their
// 'GR' size field, foreign single- and multi-member streams, CRC-32 and length checks). The first
// 4 bytes choose the range of the decoded stream that is asked for (a whole read or a slab).
#include <cstdint>
#include <cstring>
#include <vector>

#include "gigareg/error.hpp"
#include "io/gzip_blocks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::uint16_t begin = 0, length = 0;
  std::memcpy(&begin, data, 2);
  std::memcpy(&length, data + 2, 2);
  const std::uint64_t b = begin % 4096, e = b + 1 + length;  // at most 64 KiB decoded
  std::vector<unsigned char> out(std::size_t(e - b));
  try {
    (void)gigareg::io_detail::find_block_members(data + 4, size - 4);
    gigareg::io_detail::gunzip_range(data + 4, size - 4, b, e, out.data(), "fuzz.nii.gz");
  } catch (const gigareg::Error&) {
  }
  return 0;
}
