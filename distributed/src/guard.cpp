// MPI start-up and shutdown, and the rule that a failing rank takes the whole job down.

#include "gigareg/distributed/guard.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "gigareg/error.hpp"
#include "mpi_util.hpp"

namespace gigareg::dist {

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  detail::check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  owns_ = true;
  if (provided < MPI_THREAD_FUNNELED)
    abort_job("MPI provides thread level " + std::to_string(provided) +
              ", gigareg needs MPI_THREAD_FUNNELED");
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

int world_rank() {
  const int r = detail::world_rank_or_minus_one();
  return r < 0 ? 0 : r;
}

void abort_job(const std::string& what) {
  const int rank = detail::world_rank_or_minus_one();
  // One write of the whole line, flushed, so that lines of several ranks do not interleave.
  const std::string line = "gigareg: rank " + (rank < 0 ? std::string("?") : std::to_string(rank)) +
                           " failed: " + what + "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  std::fflush(stdout);
  if (rank >= 0) MPI_Abort(MPI_COMM_WORLD, 1);  // the launcher kills every rank of the job
  std::abort();
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    return std::string(to_string(e.kind())) + ": " + e.what();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

int guarded_main(int argc, char** argv, const std::function<int()>& body) {
  try {
    MpiRuntime runtime(&argc, &argv);
    int code = 0;
    try {
      code = body();
    } catch (...) {
      abort_job(describe_current_exception());
    }
    return code;
  } catch (...) {  // MPI initialisation or finalisation failed
    abort_job(describe_current_exception());
  }
}

}  // namespace gigareg::dist
