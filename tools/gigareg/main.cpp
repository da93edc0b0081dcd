// gigareg: command-line entry point. Errors from the library (gigareg::Error) name the file or
// option and the problem; they end the program with exit code 1 and leave no partial output.
#include <cstdio>
#include <exception>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "tool.hpp"

int main(int argc, char** argv) {
  gigareg::cli::Tool tool;
  try {
    tool.app().parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return tool.app().exit(e);
  }
  // Ctrl-C, or mpirun ending the job: no hidden temporary of a write in progress stays behind.
  gigareg::install_temporary_cleanup_handlers();
  try {
    return tool.run();
  } catch (const gigareg::Error& e) {
    std::fprintf(stderr, "gigareg: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gigareg: internal error: %s\n", e.what());
    return 2;
  }
}
