#pragma once
// Starting, stopping and failing a distributed run.
//
// The rule: a failing rank brings every rank down within seconds, with a message that names the
// rank and the cause; nothing hangs. A rank that throws while its peers wait in a collective
// cannot tell them (they are blocked inside MPI or NCCL), so the only safe reaction is
// MPI_Abort(MPI_COMM_WORLD), which makes the launcher (mpirun) kill every rank of the job.
//
//   int main(int argc, char** argv) {
//     return gigareg::dist::guarded_main(argc, argv, [&] {
//       auto comm = gigareg::dist::make_mpi_communicator();
//       ...            // any exception here, on any rank, ends the whole job
//       return 0;
//     });
//   }

#include <functional>
#include <string>

namespace gigareg::dist {

/// Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP threads do not)
/// unless it already is, and finalises it on destruction if it initialised it.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

 private:
  bool owns_ = false;
};

/// Rank of this process in MPI_COMM_WORLD (0 before MPI is initialised).
int world_rank();

/// Prints "gigareg: rank R failed: <what>" to stderr and aborts the whole job
/// (MPI_Abort(MPI_COMM_WORLD, 1); std::abort() when MPI is not initialised).
[[noreturn]] void abort_job(const std::string& what);

/// Runs `body` between MPI initialisation and finalisation and returns its exit code. An
/// exception escaping `body` on any rank goes to abort_job (with gigareg::Error's kind and
/// place in the message).
int guarded_main(int argc, char** argv, const std::function<int()>& body);

/// The message abort_job prints for the current exception (call inside a catch block).
std::string describe_current_exception();

}  // namespace gigareg::dist
