// A job in which one rank fails while the others wait in a collective. Run under mpirun by
// expect_failure.cmake: the job must end (non-zero) within seconds and say which rank failed and
// why; without guarded_main the waiting ranks would hang forever.
//   failure_probe [failing_rank=1] [step=2] [how=throw]
// how: throw (an exception), read (reading a file that does not exist, as an unreadable input on
// one rank), kill (the process is killed by SIGKILL: no handler runs; the launcher ends the job).

#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/distributed/guard.hpp"
#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

int main(int argc, char** argv) {
  const int failing = argc > 1 ? std::atoi(argv[1]) : 1;
  const int at_step = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string how = argc > 3 ? argv[3] : "throw";
  return gigareg::dist::guarded_main(argc, argv, [&]() {
    auto comm = gigareg::dist::make_mpi_communicator();
    for (int step = 0; step < 1000; ++step) {
      if (comm->rank() == failing && step == at_step) {
        // Let the others enter the all-reduce first, so they are really blocked in it.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        if (how == "read") (void)gigareg::read_image("/nonexistent/failure_probe_input.nii.gz");
        if (how == "kill") std::raise(SIGKILL);
        gigareg::throw_error(gigareg::ErrorKind::Internal, "failure_probe",
                             "injected failure at step " + std::to_string(step));
      }
      comm->sum(1.0);  // everyone else waits here for the failed rank
    }
    std::printf("failure_probe: no rank failed\n");
    return 0;
  });
}
