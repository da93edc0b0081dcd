// A job in which one rank fails while the others wait in a collective. Run under mpirun by
// expect_failure.cmake: the job must end (non-zero) within seconds and say which rank failed and
// why; without guarded_main the waiting ranks would hang forever.
//   failure_probe [failing_rank=1] [step=2]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/distributed/guard.hpp"
#include "gigareg/error.hpp"

int main(int argc, char** argv) {
  const int failing = argc > 1 ? std::atoi(argv[1]) : 1;
  const int at_step = argc > 2 ? std::atoi(argv[2]) : 2;
  return gigareg::dist::guarded_main(argc, argv, [&]() {
    auto comm = gigareg::dist::make_mpi_communicator();
    for (int step = 0; step < 1000; ++step) {
      if (comm->rank() == failing && step == at_step) {
        // Let the others enter the all-reduce first, so they are really blocked in it.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        gigareg::throw_error(gigareg::ErrorKind::Internal, "failure_probe",
                             "injected failure at step " + std::to_string(step));
      }
      comm->sum(1.0);  // everyone else waits here for the failed rank
    }
    std::printf("failure_probe: no rank failed\n");
    return 0;
  });
}
