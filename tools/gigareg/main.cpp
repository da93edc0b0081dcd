// gigareg: command-line entry point. Errors from the library (gigareg::Error) name the file or
// option and the problem; they end the program with exit code 1 and leave no partial output.
#include <malloc.h>

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
  // Buffers of 1 MiB and more are mapped and go back to the system when freed. glibc otherwise
  // raises its mmap threshold (up to 32 MiB) after the first large free, and the slab-sized
  // buffers of a distributed run then stay resident after they are freed: +46 MB on rank 0 of 4
  // of a 256^3 registration (docs/io.md), a sixth of its peak.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
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
