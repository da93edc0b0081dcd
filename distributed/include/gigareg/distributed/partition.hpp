#pragma once
// The registration pipeline's Partition (gigareg/partition.hpp) over a communicator: z slabs of
// every grid (Decomposition::slabs), halos filled by exchange_halos, boxes fetched from their
// owners with one grouped exchange, slice partials all-gathered in rank order (= global slice
// order), integer histograms and extrema all-reduced. With it, register_images run by P
// processes gives the single-process result (bitwise on the CPU backend with the MPI
// communicator).
//
//   gigareg::dist::guarded_main(argc, argv, [&] {
//     auto comm = gigareg::dist::make_mpi_communicator();    // or make_nccl_communicator()
//     gigareg::dist::ShardPartition part(*comm);
//     auto result = gigareg::register_images(params, fixed, moving, nullptr, nullptr, &part);
//     ...
//   });
//
// Buffers: volumes and partials handed to it live in the communicator's memory space (host for
// MPI, device for NCCL); the pipeline's backend must match (CPU with MPI, CUDA with NCCL).

#include <cstdint>
#include <vector>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/partition.hpp"

namespace gigareg::dist {

class ShardPartition final : public Partition {
 public:
  explicit ShardPartition(Communicator& comm);
  ~ShardPartition() override;

  int rank() const override { return comm_->rank(); }
  int size() const override { return comm_->size(); }
  Box owned(Index3 grid_size) const override;
  void exchange_halos(const std::vector<Volume<float>*>& volumes, Index3 halo) const override;
  Volume<float> fetch(const Volume<float>& local, const Box& want) const override;
  void gather_slices(const SlicePartials& local, index_t grid_z, SlicePartials global,
                     MemorySpace space) const override;
  std::vector<double> gather_host_slices(const std::vector<double>& local, index_t grid_z,
                                         int terms) const override;
  void allreduce_sum(std::int64_t* data, std::size_t count) const override;
  double max(double value) const override;
  double min(double value) const override;
  bool all(bool value) const override;

  Communicator& comm() const { return *comm_; }
  /// Bytes this process sent through exchange_halos and fetch since construction or the last
  /// reset (halo faces and boxes; not the small collectives).
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  void reset_bytes_sent() { bytes_sent_ = 0; }

 private:
  /// A buffer in the communicator's memory of at least `bytes` (kept between calls, so the
  /// per-iteration gathers do not allocate).
  void* scratch(int which, std::size_t bytes) const;

  Communicator* comm_;
  mutable std::uint64_t bytes_sent_ = 0;
  mutable void* scratch_[2] = {nullptr, nullptr};
  mutable std::size_t scratch_bytes_[2] = {0, 0};
};

}  // namespace gigareg::dist
