#include "gigareg/error.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

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
// Also under a launcher: LeakSanitizer does not track dynamic TLS (intercept_tls_get_addr=0). With
// 4 ranks, 3 of them recorded a dynamic TLS block of 16 GiB at address 0x4842 (left by an Open
// MPI plugin) and LeakSanitizer's tracer crashed scanning it ("Tracer caught signal 11"), failing
// dist_mpi_np4 after all its tests passed. gigareg's thread-local data are in static TLS, which
// is still scanned.
// ASan asks before libc's environment is set up (getenv returns nothing then) and before its own
// interceptors work (open, read and strcmp would crash), so the variables are looked for in
// /proc/self/environ with raw system calls, no allocation and no intercepted function.
// Not instrumented: this runs before the sanitizers' shadow memory exists.
#define GIGAREG_BEFORE_SANITIZERS __attribute__((no_sanitize("address", "undefined")))
namespace {
GIGAREG_BEFORE_SANITIZERS bool starts_with(const char* text, std::size_t length, const char* prefix) {
  for (std::size_t i = 0; prefix[i] != '\0'; ++i)
    if (i >= length || text[i] != prefix[i]) return false;
  return true;
}

GIGAREG_BEFORE_SANITIZERS bool launched_by_mpi() {
  const long fd = ::syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const char* const names[] = {"OMPI_COMM_WORLD_SIZE=", "PMIX_RANK="};
  char buffer[4096];
  char start[32];        // the current variable's first bytes
  std::size_t seen = 0;  // how many of them
  bool found = false;
  long n;
  while (!found && (n = ::syscall(SYS_read, fd, buffer, sizeof buffer)) > 0) {
    for (long i = 0; i < n && !found; ++i) {
      if (buffer[i] == '\0') {
        seen = 0;
        continue;
      }
      if (seen < sizeof start) start[seen] = buffer[i];
      ++seen;
      for (const char* name : names)
        if (seen <= sizeof start && starts_with(start, seen, name) && name[seen] == '\0')
          found = true;
    }
  }
  ::syscall(SYS_close, fd);
  return found;
}
}  // namespace

extern "C" GIGAREG_BEFORE_SANITIZERS const char* __asan_default_options() {
  return launched_by_mpi() ? "fast_unwind_on_malloc=0:intercept_tls_get_addr=0" : "";
}
#endif
