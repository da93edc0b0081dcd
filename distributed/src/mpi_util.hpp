#pragma once
// Internal: MPI error conversion and chunking shared by the MPI and NCCL communicators.

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <string>

namespace gigareg::dist::detail {

/// Throws Error(Communication) "<call> on rank R: <MPI error string>" unless rc is MPI_SUCCESS.
void check_mpi(int rc, const char* call);

/// The world rank, or -1 before MPI_Init / after MPI_Finalize.
int world_rank_or_minus_one();

/// Largest element count passed to one MPI call (MPI counts are int).
inline constexpr std::size_t kMaxMpiCount = std::size_t(1) << 30;

/// A duplicate of `parent` with MPI_ERRORS_RETURN, its rank and size, and the node-local rank
/// and size (MPI_Comm_split_type SHARED).
struct MpiComms {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
};
MpiComms duplicate_world();
void free_comm(MPI_Comm& comm) noexcept;

}  // namespace gigareg::dist::detail
