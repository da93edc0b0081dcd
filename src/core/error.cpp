#include "gigareg/error.hpp"

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
#endif
