// The processes of a distributed registration must read the same input files.

#include "registration/input_agreement.hpp"

#include <cstdint>
#include <cstdio>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "io/io_internal.hpp"

namespace gigareg::reg {

void require_same_inputs(const Partition& part, const std::vector<std::string>& paths) {
  if (part.size() == 1) return;
  for (const std::string& path : paths) {
    if (path.empty()) continue;
    const std::uint64_t mine = io_detail::file_fingerprint(path);
    // Two 32-bit halves: each is exact as a double, which is what the partition reduces.
    const double hi = double(mine >> 32), lo = double(mine & 0xffffffffu);
    const bool same = part.min(hi) == part.max(hi) && part.min(lo) == part.max(lo);
    if (same) continue;
    std::string grid;
    try {
      grid = "; this process (rank " + std::to_string(part.rank()) + ") reads " +
             read_image_header(path).geometry.describe();
    } catch (const Error&) {
      grid = "";  // not an image (a transform file): the fingerprint is all there is to say
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(mine));
    throw_error(ErrorKind::InvalidInput, path,
                "the processes of this distributed run read different files under this name "
                "(started in different working directories, or copies that differ between "
                "hosts?): their sizes, headers or contents differ (fingerprint " +
                    std::string(hex) + grid + "); give every process the same file");
  }
}

}  // namespace gigareg::reg
