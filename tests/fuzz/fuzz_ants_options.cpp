// libFuzzer target: the ANTs option grammar of `gigareg register` (parse_register_command: the
// option table, stage building, -r/-o/-x forms) and of `gigareg apply` (transform files,
// interpolation). The input is a command line, split as a shell splits it.
#include <cstdint>
#include <string>

#include "gigareg/error.hpp"
#include "gigareg/register_command.hpp"
#include "gigareg/registration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  try {
    const gigareg::RegisterCommand c = gigareg::parse_register_command(line);
    // What parses must print back as a command that parses to the same parameters.
    (void)gigareg::parse_register_command(gigareg::format_register_command(c.params, c.files));
  } catch (const gigareg::Error&) {
  }
  for (auto parse : {+[](const std::string& s) { (void)gigareg::ants::parse_transform_file(s); },
                     +[](const std::string& s) { (void)gigareg::ants::parse_interpolation(s); },
                     +[](const std::string& s) { (void)gigareg::ants::parse_masks(s); }}) {
    try {
      parse(line);
    } catch (const gigareg::Error&) {
    }
  }
  return 0;
}
