// Single-process or MPI launch of `gigareg register`.

#include "launch.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "gigareg/memory.hpp"

#if GIGAREG_CLI_DISTRIBUTED
#include "gigareg/distributed/communicator.hpp"
#include "gigareg/distributed/guard.hpp"
#include "gigareg/distributed/partition.hpp"
#endif

namespace gigareg::cli {
namespace {

long env_long(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return -1;
  return std::strtol(v, nullptr, 10);
}

}  // namespace

bool launched_by_mpi() {
  const long forced = env_long("GIGAREG_DISTRIBUTED");
  if (forced >= 0) return forced != 0;
  // mpirun (Open MPI), mpiexec (MPICH / Intel MPI's Hydra and Slurm's PMI-2): set for every
  // rank, also with one process. Slurm without PMI: only a step of several tasks counts, since a
  // batch script's own step has these variables too.
  if (env_long("OMPI_COMM_WORLD_SIZE") >= 1 || env_long("PMI_SIZE") >= 1 || env_long("PMIX_SIZE") >= 1)
    return true;
  return env_long("SLURM_STEP_NUM_TASKS") > 1;
}

int run_with_partition(DeviceChoice device, const std::function<int(const Partition*)>& body) {
  if (!launched_by_mpi()) return body(nullptr);
#if GIGAREG_CLI_DISTRIBUTED
  int argc = 0;
  char** argv = nullptr;
  return dist::guarded_main(argc, argv, [&] {
    const bool cuda = device == DeviceChoice::Cuda || (device == DeviceChoice::Auto && cuda_available());
    std::unique_ptr<dist::Communicator> comm =
        cuda ? dist::make_nccl_communicator() : dist::make_mpi_communicator();
    if (comm->rank() != 0) {
      // The other ranks report only problems (rank 0 reports progress for the job).
      set_log_level(LogLevel::Warning);
      const int rank = comm->rank();
      set_log_sink([rank](LogLevel level, std::string_view msg) {
        std::fprintf(stderr, "gigareg: rank %d: %s%.*s\n", rank,
                     level >= LogLevel::Warning ? "warning: " : "", int(msg.size()), msg.data());
      });
    }
    log(LogLevel::Info, std::string("distributed run: ") + std::to_string(comm->size()) +
                            " processes over " + dist::to_string(comm->backend()));
    dist::ShardPartition partition(*comm);
    const int code = body(&partition);
    comm->barrier();
    return code;
  });
#else
  (void)device;
  throw_error(ErrorKind::InvalidArgument, "gigareg register",
              "started by an MPI launcher, but this gigareg was built without the distributed "
              "layer (GIGAREG_DISTRIBUTED=OFF); set GIGAREG_DISTRIBUTED=0 to run each process alone");
#endif
}

}  // namespace gigareg::cli
