// The communicator's host-valued conveniences, and the MPI implementation (host buffers).

#include "gigareg/distributed/communicator.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "mpi_util.hpp"

namespace gigareg::dist {

const char* to_string(CommBackend backend) { return backend == CommBackend::Mpi ? "mpi" : "nccl"; }

namespace detail {

int world_rank_or_minus_one() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING + 1] = {0};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) std::strcpy(text, "unknown MPI error");
  throw_error(ErrorKind::Communication,
              std::string(call) + " on rank " + std::to_string(world_rank_or_minus_one()),
              text);
}

MpiComms duplicate_world() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    throw_error(ErrorKind::Communication, "communicator",
                "MPI is not initialised (run inside guarded_main or an MpiRuntime)");
  MpiComms c;
  // Errors on the duplicate are returned (and turned into gigareg::Error), not fatal.
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &c.comm), "MPI_Comm_dup");
  check_mpi(MPI_Comm_set_errhandler(c.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(c.comm, &c.rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(c.comm, &c.size), "MPI_Comm_size");
  MPI_Comm node = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(c.comm, MPI_COMM_TYPE_SHARED, c.rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(node, &c.local_rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(node, &c.local_size), "MPI_Comm_size");
  MPI_Comm_free(&node);
  return c;
}

void free_comm(MPI_Comm& comm) noexcept {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm);
  comm = MPI_COMM_NULL;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
namespace {

/// One value through a collective in the communicator's memory space.
template <class T, class Op>
T through(Communicator& comm, T value, Op op) {
  if (comm.memory_space() == MemorySpace::Host) {
    op(&value);
    return value;
  }
  T* d = static_cast<T*>(allocate_bytes(sizeof(T), MemorySpace::Device, "communicator scalar"));
  try {
    copy_bytes(d, MemorySpace::Device, &value, MemorySpace::Host, sizeof(T));
    op(d);
    comm.synchronize();
    copy_bytes(&value, MemorySpace::Host, d, MemorySpace::Device, sizeof(T));
  } catch (...) {
    free_bytes(d, MemorySpace::Device);
    throw;
  }
  free_bytes(d, MemorySpace::Device);
  return value;
}

}  // namespace

double Communicator::sum(double value) {
  return through(*this, value, [this](double* p) { allreduce_sum(p, 1); });
}
std::int64_t Communicator::sum(std::int64_t value) {
  return through(*this, value, [this](std::int64_t* p) { allreduce_sum(p, 1); });
}
double Communicator::max(double value) {
  return through(*this, value, [this](double* p) { allreduce_max(p, 1); });
}
double Communicator::min(double value) {
  return through(*this, value, [this](double* p) { allreduce_min(p, 1); });
}
bool Communicator::all(bool value) { return sum(std::int64_t(value ? 0 : 1)) == 0; }

std::string Communicator::describe() const {
  return std::string(to_string(backend())) + " rank " + std::to_string(rank_) + " of " +
         std::to_string(size_);
}

// ---------------------------------------------------------------------------------------------
namespace {

using detail::check_mpi;
using detail::kMaxMpiCount;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    c_ = detail::duplicate_world();
    rank_ = c_.rank;
    size_ = c_.size;
    local_rank_ = c_.local_rank;
    local_size_ = c_.local_size;
  }
  ~MpiCommunicator() override { detail::free_comm(c_.comm); }

  CommBackend backend() const override { return CommBackend::Mpi; }
  MemorySpace memory_space() const override { return MemorySpace::Host; }

  void barrier() override { check_mpi(MPI_Barrier(c_.comm), "MPI_Barrier"); }
  void synchronize() override {}

  void allgather(const void* send, void* recv, std::size_t bytes_per_rank) override {
    // Chunks of at most kMaxMpiCount bytes of every rank's block: chunk [off, off + n) of each
    // block is received with a byte type resized to the block stride, so no staging is needed.
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    for (std::size_t off = 0; off < bytes_per_rank; off += kMaxMpiCount) {
      const std::size_t n = std::min(kMaxMpiCount, bytes_per_rank - off);
      MPI_Datatype piece = MPI_DATATYPE_NULL, strided = MPI_DATATYPE_NULL;
      check_mpi(MPI_Type_contiguous(int(n), MPI_BYTE, &piece), "MPI_Type_contiguous");
      check_mpi(MPI_Type_create_resized(piece, 0, MPI_Aint(bytes_per_rank), &strided),
                "MPI_Type_create_resized");
      check_mpi(MPI_Type_commit(&strided), "MPI_Type_commit");
      const int rc = MPI_Allgather(s + off, int(n), MPI_BYTE, r + off, 1, strided, c_.comm);
      MPI_Type_free(&strided);
      MPI_Type_free(&piece);
      check_mpi(rc, "MPI_Allgather");
    }
  }

  void broadcast(void* data, std::size_t bytes, int root) override {
    require_rank(root, "broadcast");
    auto* p = static_cast<char*>(data);
    for (std::size_t off = 0; off < bytes; off += kMaxMpiCount)
      check_mpi(MPI_Bcast(p + off, int(std::min(kMaxMpiCount, bytes - off)), MPI_BYTE, root, c_.comm),
                "MPI_Bcast");
  }

  void exchange(const std::vector<Message>& sends, const std::vector<Message>& recvs) override {
    // Receives first, then sends, then one wait: no ordering between peers, no deadlock.
    // Messages over kMaxMpiCount bytes go as consecutive pieces (both sides split the same way);
    // MPI's non-overtaking rule keeps messages between a pair in posting order.
    std::vector<MPI_Request> requests;
    std::uint64_t bytes = 0;
    auto post = [&](const Message& m, bool is_send) {
      // A peer outside the communicator is left to MPI, which reports MPI_ERR_RANK (turned into
      // Error(Communication)); after such an error the communicator is unusable (posted requests
      // are abandoned) and the job should end.
      if (m.peer == rank_)
        throw_error(ErrorKind::InvalidArgument, "exchange", "a rank may not send to itself");
      if (m.bytes > 0 && m.data == nullptr)
        throw_error(ErrorKind::InvalidArgument, "exchange", "a message has no buffer");
      auto* p = static_cast<char*>(m.data);
      for (std::size_t off = 0; off < m.bytes; off += kMaxMpiCount) {  // empty messages: none
        const int n = int(std::min(kMaxMpiCount, m.bytes - off));
        MPI_Request q = MPI_REQUEST_NULL;
        if (is_send)
          check_mpi(MPI_Isend(p + off, n, MPI_BYTE, m.peer, kTag, c_.comm, &q), "MPI_Isend");
        else
          check_mpi(MPI_Irecv(p + off, n, MPI_BYTE, m.peer, kTag, c_.comm, &q), "MPI_Irecv");
        requests.push_back(q);
      }
    };
    for (const Message& m : recvs) post(m, false);
    for (const Message& m : sends) {
      post(m, true);
      bytes += m.bytes;
    }
    std::vector<MPI_Status> statuses(requests.size());
    const int rc = MPI_Waitall(int(requests.size()), requests.data(), statuses.data());
    if (rc == MPI_ERR_IN_STATUS) {
      for (const MPI_Status& s : statuses)
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING)
          check_mpi(s.MPI_ERROR, "MPI_Waitall (exchange)");
    }
    check_mpi(rc, "MPI_Waitall (exchange)");
    stats_.exchanges += 1;
    stats_.messages_sent += sends.size();
    stats_.bytes_sent += bytes;
  }

 private:
  static constexpr int kTag = 7001;

  void allreduce(void* data, std::size_t count, Element element, Reduce op) override {
    const MPI_Datatype type = element == Element::Float64 ? MPI_DOUBLE : MPI_INT64_T;
    const MPI_Op mpi_op = op == Reduce::Sum ? MPI_SUM : op == Reduce::Max ? MPI_MAX : MPI_MIN;
    const std::size_t bytes = element == Element::Float64 ? sizeof(double) : sizeof(std::int64_t);
    for (std::size_t off = 0; off < count; off += kMaxMpiCount)
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + off * bytes,
                              int(std::min(kMaxMpiCount, count - off)), type, mpi_op, c_.comm),
                "MPI_Allreduce");
  }
  void require_rank(int peer, const char* op) const {
    if (peer < 0 || peer >= size_)
      throw_error(ErrorKind::InvalidArgument, op,
                  "rank " + std::to_string(peer) + " is not one of the " + std::to_string(size_) +
                      " ranks");
  }

  detail::MpiComms c_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() {
  return std::make_unique<MpiCommunicator>();
}

#if !GIGAREG_WITH_NCCL
std::unique_ptr<Communicator> make_nccl_communicator(void*) {
  throw_error(ErrorKind::Cuda, "make_nccl_communicator", "gigareg was built without NCCL");
}
bool nccl_built() { return false; }
#endif

}  // namespace gigareg::dist
