#pragma once
// The distributed layer's communicator: what sharded ops need from MPI or NCCL, and nothing else.
//
// Two implementations behind one interface:
//   - MPI on host buffers (make_mpi_communicator): runs everywhere; how CI tests sharding on a
//     CPU-only machine (`mpirun --oversubscribe -np 4`).
//   - NCCL on device buffers (make_nccl_communicator, CUDA builds): MPI bootstraps it (rank 0
//     creates the ncclUniqueId and broadcasts it), each rank uses GPU local_rank % device_count.
// Every buffer handed to a communicator lives in its memory_space(). Counts are size_t: messages
// and reductions of more than 2^31 elements are split by the implementation where the transport
// needs it.
//
// Ordering. MPI calls complete before they return. NCCL calls are enqueued on the
// communicator's CUDA stream (the stream of the Context the sharded ops run on) and complete in
// stream order; synchronize() waits for them. Host-valued helpers (allreduce of one value, the
// sharded losses) synchronise themselves.
//
// Errors. MPI runs with MPI_ERRORS_RETURN on the communicator's own duplicate of the world
// communicator; any failing call throws gigareg::Error(Communication) naming the call, the rank
// and MPI's error string. NCCL failures (including asynchronous ones, polled while waiting)
// abort the NCCL communicator (ncclCommAbort) and throw Error(Communication). A rank that throws
// while its peers wait in a collective must bring the job down: run rank code inside
// guarded_main (guard.hpp), which prints "gigareg: rank R failed: <what>" and calls MPI_Abort.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gigareg/memory.hpp"

namespace gigareg::dist {

enum class CommBackend { Mpi, Nccl };
const char* to_string(CommBackend backend);

/// One message of a grouped exchange. Messages between a pair of ranks are matched in the order
/// they are listed: the i-th send from rank a to rank b fills the i-th receive on b from a, and
/// the two must have the same size.
struct Message {
  int peer = -1;
  void* data = nullptr;   // the send buffer (read only) or the receive buffer
  std::size_t bytes = 0;
};

/// Traffic counters of exchange() (halo faces, gathers), for tests and benchmarks.
struct CommStats {
  std::uint64_t exchanges = 0;      // calls of exchange()
  std::uint64_t messages_sent = 0;
  std::uint64_t bytes_sent = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual CommBackend backend() const = 0;
  /// Where the buffers of every call below live (Mpi: host, Nccl: device).
  virtual MemorySpace memory_space() const = 0;
  /// The cudaStream_t calls are enqueued on (Nccl); nullptr for MPI.
  virtual void* stream() const { return nullptr; }

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Rank among the ranks of this node (MPI_Comm_split_type SHARED), and their number.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }

  /// All ranks reach it before any leaves (NCCL: after the stream has drained).
  virtual void barrier() = 0;
  /// Waits for every enqueued operation (no-op for MPI).
  virtual void synchronize() = 0;

  // In-place element-wise reductions over all ranks of `count` elements.
  void allreduce_sum(double* data, std::size_t count) { allreduce(data, count, Element::Float64, Reduce::Sum); }
  void allreduce_sum(std::int64_t* data, std::size_t count) { allreduce(data, count, Element::Int64, Reduce::Sum); }
  void allreduce_max(double* data, std::size_t count) { allreduce(data, count, Element::Float64, Reduce::Max); }
  void allreduce_min(double* data, std::size_t count) { allreduce(data, count, Element::Float64, Reduce::Min); }

  /// recv (size() * bytes_per_rank bytes) = the send blocks of ranks 0, 1, ... in rank order.
  virtual void allgather(const void* send, void* recv, std::size_t bytes_per_rank) = 0;
  /// data (bytes) of `root` copied to every rank.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  /// A grouped point-to-point exchange: every send and receive is posted, then all complete
  /// (no ordering between peers, so neighbours exchanging both ways cannot deadlock). A rank may
  /// not send to itself. Counts into stats().
  virtual void exchange(const std::vector<Message>& sends, const std::vector<Message>& recvs) = 0;

  // Host-valued conveniences (one value; synchronising on NCCL).
  double sum(double value);
  std::int64_t sum(std::int64_t value);
  double max(double value);
  double min(double value);
  /// True on every rank iff `value` is true on every rank (the agreement tests and guards use).
  bool all(bool value);

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

  /// "rank R of P" for messages.
  std::string describe() const;

 protected:
  enum class Element { Float64, Int64 };
  enum class Reduce { Sum, Max, Min };
  /// The one reduction each backend implements; the typed calls above name it.
  virtual void allreduce(void* data, std::size_t count, Element element, Reduce op) = 0;

  Communicator() = default;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  CommStats stats_;
};

/// An MPI communicator over a duplicate of MPI_COMM_WORLD (host buffers). MPI must have been
/// initialised (guarded_main or MpiRuntime does it).
std::unique_ptr<Communicator> make_mpi_communicator();

/// An NCCL communicator over all ranks of MPI_COMM_WORLD (device buffers), on `stream`
/// (a cudaStream_t; nullptr: the legacy default stream). Selects GPU local_rank % device_count
/// with cudaSetDevice before creating it. Throws Error(Cuda) on builds without NCCL or without a
/// visible device, Error(Communication) when NCCL fails.
std::unique_ptr<Communicator> make_nccl_communicator(void* stream = nullptr);

/// True when this build contains the NCCL communicator.
bool nccl_built();

}  // namespace gigareg::dist
