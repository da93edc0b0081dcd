#include "gigareg/error.hpp"

#include <cstdlib>

namespace gigareg {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::InvalidInput: return "invalid input";
    case ErrorKind::Io: return "I/O error";
    case ErrorKind::OutOfMemory: return "out of memory";
    case ErrorKind::Cuda: return "CUDA error";
    case ErrorKind::Communication: return "communication error";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

Error::Error(ErrorKind kind, std::string where, std::string what)
    : std::runtime_error(where.empty() ? what : where + ": " + what),
      kind_(kind),
      where_(std::move(where)),
      problem_(std::move(what)) {}

void throw_error(ErrorKind kind, std::string where, std::string what) {
  throw Error(kind, std::move(where), std::move(what));
}

}  // namespace gigareg

#ifdef GIGAREG_LSAN_SUPPRESSIONS
// Sanitize builds: LeakSanitizer asks every program for its default suppressions through this
// function. They are tests/sanitizers/lsan.supp (third-party leaks only, each explained there),
// defined here because every program that links gigareg links this file (it throws its errors).
extern "C" const char* __lsan_default_suppressions() {
  return
#include "gigareg/lsan_suppressions.inc"
      ;
}

// Under mpirun or srun (the launcher sets the rank variable), allocations are unwound with the
// slow, DWARF-based unwinder. Open MPI's and PMIx's plugins are built without frame pointers and
// are unloaded before LeakSanitizer reports, so the fast unwinder stops at one frame of an
// unknown module and lsan.supp's library names cannot match; the slow unwinder reaches the
// libmpi / libopen-rte / libevent frames that called them. Not for every program: it makes each
// allocation several times slower, and one process needs no help.
extern "C" const char* __asan_default_options() {
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
  return launched ? "fast_unwind_on_malloc=0" : "";
}
#endif
