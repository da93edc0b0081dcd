// The NCCL communicator (device buffers), bootstrapped over MPI. Compiled only when
// GIGAREG_WITH_NCCL (CUDA build with the distributed layer).
//
// Bootstrap: every rank duplicates MPI_COMM_WORLD (for the local rank and the barrier), selects GPU
// local_rank % device_count, rank 0 creates the ncclUniqueId and MPI_Bcast's it, and all ranks call
// ncclCommInitRank. Every collective and the grouped send/recv are enqueued on the stream given at
// construction (the Context's stream), so they are ordered with the ops without host syncs.
// Errors: a failing NCCL call, or an asynchronous NCCL error seen while waiting in synchronize(),
// aborts the NCCL communicator (ncclCommAbort: peers blocked in a collective with this rank error
// out instead of hanging) and throws Error(Communication).

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <exception>
#include <string>
#include <thread>

#include "gigareg/config.hpp"
#include "gigareg/distributed/communicator.hpp"
#include "gigareg/error.hpp"
#include "mpi_util.hpp"

static_assert(GIGAREG_WITH_NCCL, "nccl_communicator.cpp is compiled only with NCCL");

namespace gigareg::dist {
namespace {

using detail::check_mpi;

void check_cuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    throw_error(ErrorKind::Cuda,
                std::string(call) + " on rank " + std::to_string(detail::world_rank_or_minus_one()),
                cudaGetErrorString(e));
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(void* stream) : stream_(static_cast<cudaStream_t>(stream)) {
    c_ = detail::duplicate_world();
    rank_ = c_.rank;
    size_ = c_.size;
    local_rank_ = c_.local_rank;
    local_size_ = c_.local_size;
    int devices = 0;
    check_cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (devices < 1)
      throw_error(ErrorKind::Cuda, "make_nccl_communicator", "no CUDA device is visible");
    if (local_size_ > devices)  // NCCL refuses two ranks on one GPU ("duplicate GPU")
      throw_error(ErrorKind::InvalidArgument, "make_nccl_communicator",
                  std::to_string(local_size_) + " ranks on this node but " + std::to_string(devices) +
                      " visible GPU(s): NCCL needs one GPU per rank");
    device_ = local_rank_ % devices;
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id{};
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_mpi(MPI_Bcast(&id, int(sizeof(id)), MPI_BYTE, 0, c_.comm), "MPI_Bcast(ncclUniqueId)");
    check_nccl(ncclCommInitRank(&nccl_, size_, id, rank_), "ncclCommInitRank");
  }

  ~NcclCommunicator() override {
    if (nccl_ != nullptr) {
      // Unwinding after a failure: peers may be blocked in a collective with us; abort rather
      // than finalise (which would wait for them).
      if (std::uncaught_exceptions() > 0) ncclCommAbort(nccl_);
      else ncclCommDestroy(nccl_);
    }
    detail::free_comm(c_.comm);
  }

  CommBackend backend() const override { return CommBackend::Nccl; }
  MemorySpace memory_space() const override { return MemorySpace::Device; }
  void* stream() const override { return stream_; }

  void barrier() override {
    synchronize();
    check_mpi(MPI_Barrier(c_.comm), "MPI_Barrier");
  }

  void synchronize() override {
    // Poll rather than block in cudaStreamSynchronize, so that an asynchronous NCCL error (a
    // peer that died, a network failure) is seen and turned into an exception.
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) check_cuda(e, "cudaStreamQuery (NCCL communicator)");
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(nccl_, &async), "ncclCommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress)
        check_nccl(async, "asynchronous NCCL operation");
      std::this_thread::yield();
    }
  }

  void allgather(const void* send, void* recv, std::size_t bytes_per_rank) override {
    if (bytes_per_rank == 0) return;
    check_nccl(ncclAllGather(send, recv, bytes_per_rank, ncclUint8, nccl_, stream_), "ncclAllGather");
  }

  void broadcast(void* data, std::size_t bytes, int root) override {
    if (root < 0 || root >= size_)
      throw_error(ErrorKind::InvalidArgument, "broadcast", "root is not a rank");
    if (bytes == 0) return;
    check_nccl(ncclBroadcast(data, data, bytes, ncclUint8, root, nccl_, stream_), "ncclBroadcast");
  }

  void exchange(const std::vector<Message>& sends, const std::vector<Message>& recvs) override {
    for (const auto* list : {&sends, &recvs})
      for (const Message& m : *list) {
        if (m.peer < 0 || m.peer >= size_ || m.peer == rank_)
          throw_error(ErrorKind::InvalidArgument, "exchange",
                      "peer " + std::to_string(m.peer) + " is not another rank");
        if (m.bytes > 0 && m.data == nullptr)
          throw_error(ErrorKind::InvalidArgument, "exchange", "a message has no buffer");
      }
    // One group: NCCL matches sends and receives between a pair of ranks in posting order, and
    // schedules all peers together (no deadlock between neighbours exchanging both ways).
    std::uint64_t bytes = 0;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    ncclResult_t r = ncclSuccess;
    const char* failed = nullptr;
    for (const Message& m : recvs) {
      if (m.bytes == 0 || r != ncclSuccess) continue;
      r = ncclRecv(m.data, m.bytes, ncclUint8, m.peer, nccl_, stream_);
      if (r != ncclSuccess) failed = "ncclRecv";
    }
    for (const Message& m : sends) {
      if (m.bytes == 0 || r != ncclSuccess) continue;
      r = ncclSend(m.data, m.bytes, ncclUint8, m.peer, nccl_, stream_);
      if (r != ncclSuccess) failed = "ncclSend";
      bytes += m.bytes;
    }
    const ncclResult_t end = ncclGroupEnd();
    if (failed != nullptr) check_nccl(r, failed);
    check_nccl(end, "ncclGroupEnd");
    stats_.exchanges += 1;
    stats_.messages_sent += sends.size();
    stats_.bytes_sent += bytes;
  }

 private:
  void allreduce(void* data, std::size_t count, Element element, Reduce op) override {
    if (count == 0) return;
    const ncclDataType_t type = element == Element::Float64 ? ncclFloat64 : ncclInt64;
    const ncclRedOp_t nccl_op = op == Reduce::Sum ? ncclSum : op == Reduce::Max ? ncclMax : ncclMin;
    check_nccl(ncclAllReduce(data, data, count, type, nccl_op, nccl_, stream_), "ncclAllReduce");
  }

  void check_nccl(ncclResult_t r, const char* call) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    std::string what = ncclGetErrorString(r);
    if (nccl_ != nullptr) {
      const char* last = ncclGetLastError(nccl_);
      if (last != nullptr && *last != '\0') what += std::string(" (") + last + ")";
      ncclCommAbort(nccl_);  // peers waiting on us error out instead of hanging
      nccl_ = nullptr;
    }
    throw_error(ErrorKind::Communication,
                std::string(call) + " on rank " + std::to_string(rank_), what);
  }

  detail::MpiComms c_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t nccl_ = nullptr;
  int device_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(void* stream) {
  return std::make_unique<NcclCommunicator>(stream);
}
bool nccl_built() { return true; }

}  // namespace gigareg::dist
