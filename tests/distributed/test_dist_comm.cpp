// The MPI communicator: ranks, collectives with exactly predictable results, grouped
// point-to-point exchange, traffic counters, and MPI errors turned into gigareg::Error.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "gigareg/error.hpp"
#include "mpi_test.hpp"

namespace gigareg::dist {
namespace {

using test::world;

TEST(DistComm, RanksAndLocalRanks) {
  Communicator& c = world();
  EXPECT_EQ(c.backend(), CommBackend::Mpi);
  EXPECT_EQ(c.memory_space(), MemorySpace::Host);
  EXPECT_GE(c.size(), 1);
  EXPECT_ALL_RANKS(c.rank() >= 0 && c.rank() < c.size());
  // One node here: the local ranks are the world ranks.
  EXPECT_ALL_RANKS(c.local_size() >= 1 && c.local_size() <= c.size());
  EXPECT_ALL_RANKS(c.local_rank() >= 0 && c.local_rank() < c.local_size());
  // Ranks are distinct: the sum of ranks is 0 + 1 + ... + (P - 1).
  const std::int64_t p = c.size();
  EXPECT_EQ(c.sum(std::int64_t(c.rank())), p * (p - 1) / 2);
  c.barrier();
}

TEST(DistComm, AllreduceIsExact) {
  Communicator& c = world();
  const int p = c.size(), r = c.rank();
  // Integers and dyadic fractions: sums are exact in double, so predictable bitwise.
  std::vector<double> d = {double(r), 0.5 * r + 0.25, -1.0, std::ldexp(1.0, -30) * (r + 1)};
  c.allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d[0], double(p) * (p - 1) / 2);
  EXPECT_EQ(d[1], 0.5 * (double(p) * (p - 1) / 2) + 0.25 * p);
  EXPECT_EQ(d[2], -double(p));
  EXPECT_EQ(d[3], std::ldexp(1.0, -30) * p * (p + 1) / 2);
  std::vector<std::int64_t> big = {(std::int64_t(1) << 50) + r, -r};
  c.allreduce_sum(big.data(), big.size());
  EXPECT_EQ(big[0], (std::int64_t(1) << 50) * p + std::int64_t(p) * (p - 1) / 2);
  EXPECT_EQ(big[1], -std::int64_t(p) * (p - 1) / 2);
  std::vector<double> mx = {double(r), -double(r)}, mn = mx;
  c.allreduce_max(mx.data(), 2);
  c.allreduce_min(mn.data(), 2);
  EXPECT_EQ(mx[0], p - 1);
  EXPECT_EQ(mx[1], 0.0);
  EXPECT_EQ(mn[0], 0.0);
  EXPECT_EQ(mn[1], -(p - 1));
  EXPECT_EQ(c.max(double(r) * 3), 3.0 * (p - 1));
  EXPECT_EQ(c.min(double(r) + 7), 7.0);
  EXPECT_EQ(c.sum(1.0), double(p));
  EXPECT_TRUE(c.all(true));
  EXPECT_EQ(c.all(r != p - 1), false);  // one rank says no: every rank hears no
}

TEST(DistComm, AllgatherInRankOrderAndBroadcast) {
  Communicator& c = world();
  const int p = c.size(), r = c.rank();
  // Blocks of an odd byte size, to catch stride mistakes.
  const std::size_t block = 13;
  std::vector<unsigned char> mine(block), all(block * std::size_t(p), 0);
  for (std::size_t b = 0; b < block; ++b) mine[b] = static_cast<unsigned char>(r * 31 + b);
  c.allgather(mine.data(), all.data(), block);
  bool ok = true;
  for (int q = 0; q < p; ++q)
    for (std::size_t b = 0; b < block; ++b)
      ok = ok && all[std::size_t(q) * block + b] == static_cast<unsigned char>(q * 31 + b);
  EXPECT_ALL_RANKS(ok);
  const int root = p - 1;
  std::vector<double> data(5, double(r));
  if (r == root) std::iota(data.begin(), data.end(), 10.0);
  c.broadcast(data.data(), data.size() * sizeof(double), root);
  EXPECT_ALL_RANKS(data == std::vector<double>({10, 11, 12, 13, 14}));
}

TEST(DistComm, GroupedExchangeRingBothWaysAndStats) {
  Communicator& c = world();
  const int p = c.size(), r = c.rank();
  if (p == 1) {
    c.reset_stats();
    c.exchange({}, {});
    EXPECT_EQ(c.stats().bytes_sent, 0u);
    return;
  }
  // Every rank sends two messages to each ring neighbour (order must be kept) and receives two
  // from each: neighbours exchanging both ways at once cannot deadlock.
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  std::vector<int> a(100), b(7), to_prev(3);
  for (int i = 0; i < 100; ++i) a[std::size_t(i)] = r * 1000 + i;
  for (int i = 0; i < 7; ++i) b[std::size_t(i)] = -r * 1000 - i;
  for (int i = 0; i < 3; ++i) to_prev[std::size_t(i)] = r + 100 * i;
  std::vector<int> ra(100, -1), rb(7, -1), r_from_next(3, -1);
  std::vector<Message> sends = {{next, a.data(), a.size() * sizeof(int)},
                                {next, b.data(), b.size() * sizeof(int)},
                                {prev, to_prev.data(), to_prev.size() * sizeof(int)}};
  std::vector<Message> recvs = {{prev, ra.data(), ra.size() * sizeof(int)},
                                {prev, rb.data(), rb.size() * sizeof(int)},
                                {next, r_from_next.data(), r_from_next.size() * sizeof(int)}};
  // With P = 2, prev == next: all three messages go to one peer and are matched in posting
  // order, which both lists keep (a, b, to_prev -> ra, rb, r_from_next).
  c.reset_stats();
  c.exchange(sends, recvs);
  bool ok = true;
  for (int i = 0; i < 100; ++i) ok = ok && ra[std::size_t(i)] == prev * 1000 + i;
  for (int i = 0; i < 7; ++i) ok = ok && rb[std::size_t(i)] == -prev * 1000 - i;
  for (int i = 0; i < 3; ++i) ok = ok && r_from_next[std::size_t(i)] == next + 100 * i;
  EXPECT_ALL_RANKS(ok);
  EXPECT_EQ(c.stats().exchanges, 1u);
  EXPECT_EQ(c.stats().messages_sent, 3u);
  EXPECT_EQ(c.stats().bytes_sent, (100u + 7u + 3u) * sizeof(int));
}

TEST(DistComm, BadArgumentsAreRejectedBeforeCommunicating) {
  Communicator& c = world();
  int x = 0;
  EXPECT_THROW(c.exchange({{c.rank(), &x, sizeof x}}, {}), Error);  // to itself
  EXPECT_THROW(c.broadcast(&x, sizeof x, -1), Error);
  c.barrier();
}

TEST(DistComm, MpiErrorsBecomeCommunicationErrors) {
  // A send to a rank that does not exist: MPI (with MPI_ERRORS_RETURN on the communicator)
  // returns MPI_ERR_RANK instead of aborting, and the communicator throws Error(Communication)
  // naming the call, the rank and MPI's message. Every rank does it, so all stay in step.
  Communicator& c = world();
  int x = 0;
  bool right_kind = false, names_call_and_rank = false;
  try {
    c.exchange({{c.size() + 3, &x, sizeof x}}, {});
  } catch (const Error& e) {
    right_kind = e.kind() == ErrorKind::Communication;
    const std::string what = e.what();
    names_call_and_rank = what.find("MPI_Isend on rank " + std::to_string(c.rank())) != std::string::npos;
    if (c.rank() == 0) std::printf("[ message  ] %s\n", what.c_str());
  }
  EXPECT_ALL_RANKS(right_kind && names_call_and_rank);
  c.barrier();
}

}  // namespace
}  // namespace gigareg::dist
