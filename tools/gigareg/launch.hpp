#pragma once
// How `gigareg register` runs: one process, or one of P processes started by mpirun / srun.
#include <functional>

#include "gigareg/partition.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::cli {

/// True when this process was started by an MPI launcher (mpirun, mpiexec, srun) as one of a
/// job's ranks, by the variables the launchers set (Open MPI, MPICH/Hydra and Slurm's PMI), or
/// when GIGAREG_DISTRIBUTED=1; GIGAREG_DISTRIBUTED=0 forces a single process.
bool launched_by_mpi();

/// Runs `body` with the partition of this launch: nullptr for a single process; under MPI, a
/// ShardPartition over an MPI communicator (CPU backend) or an NCCL one (CUDA backend; each rank
/// takes GPU local_rank % devices), inside guarded_main, so that a failure on any rank ends every
/// rank with a message naming it. Ranks other than 0 print only warnings and errors.
int run_with_partition(DeviceChoice device, const std::function<int(const Partition*)>& body);

}  // namespace gigareg::cli
