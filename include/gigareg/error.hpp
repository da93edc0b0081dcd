#pragma once
// The one exception type of gigareg: what failed and where (a file, an option, an op, a rank).

#include <stdexcept>
#include <string>

namespace gigareg {

enum class ErrorKind {
  InvalidArgument,  // a caller passed something the op cannot accept
  InvalidInput,     // a file or its header is malformed or unsupported
  Io,               // reading or writing failed (missing, unreadable, truncated, disk full)
  OutOfMemory,      // an allocation or a size check against available memory failed
  Cuda,             // a CUDA runtime call or kernel launch failed
  Communication,    // MPI/NCCL failure or a peer rank failed
  Internal,         // a broken invariant: a bug in gigareg
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  /// `where` names the file, option or operation the problem concerns; `what` says what is wrong.
  Error(ErrorKind kind, std::string where, std::string what);

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& where() const noexcept { return where_; }
  const std::string& problem() const noexcept { return problem_; }

 private:
  ErrorKind kind_;
  std::string where_;
  std::string problem_;
};

[[noreturn]] void throw_error(ErrorKind kind, std::string where, std::string what);

}  // namespace gigareg

/// Throws gigareg::Error(InvalidArgument) naming the calling function when cond is false.
#define GIGAREG_REQUIRE(cond, message)                                                       \
  do {                                                                                       \
    if (!(cond)) ::gigareg::throw_error(::gigareg::ErrorKind::InvalidArgument, __func__, (message)); \
  } while (0)

/// Throws gigareg::Error(Internal) with the source location when an invariant breaks.
#define GIGAREG_ASSERT(cond)                                                                  \
  do {                                                                                        \
    if (!(cond))                                                                              \
      ::gigareg::throw_error(::gigareg::ErrorKind::Internal,                                  \
                             std::string(__FILE__) + ":" + std::to_string(__LINE__),          \
                             "invariant violated: " #cond);                                   \
  } while (0)
