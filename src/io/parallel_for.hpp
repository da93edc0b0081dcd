#pragma once
// The loop that src/io runs its independent pieces of work on (gzip members, Zarr chunks)
// (not installed).

#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

namespace gigareg::io_detail {

/// Runs body(i) for i in [0, n) on all cores (OpenMP, dynamic scheduling: pieces differ in cost);
/// rethrows the exception of the lowest index after all have finished, so an error is reported
/// the same way whatever the scheduling.
template <class Body>
void parallel_for(std::size_t n, Body&& body) {
  std::vector<std::exception_ptr> errors(n);
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t i = 0; i < std::int64_t(n); ++i) {
    try {
      body(std::size_t(i));
    } catch (...) {
      errors[std::size_t(i)] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace gigareg::io_detail
