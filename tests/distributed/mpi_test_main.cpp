// main() of the distributed test executable: every rank runs the same GoogleTest suites.
//   - rank 0 prints the usual gtest output; other ranks print only their failures, tagged;
//   - gtest does not catch exceptions: one escaping a test on any rank reaches guarded_main,
//     which prints "gigareg: rank R failed: ..." and aborts the job (a rank that carried on
//     after an exception could leave its peers waiting in a collective);
//   - the exit code is agreed by all ranks (a failure on any rank fails every rank).

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "gigareg/distributed/guard.hpp"
#include "mpi_test.hpp"

namespace gigareg::dist::test {
namespace {

Communicator* g_world = nullptr;

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

}  // namespace

Communicator& world() {
  if (g_world == nullptr) std::abort();
  return *g_world;
}

}  // namespace gigareg::dist::test

int main(int argc, char** argv) {
  return gigareg::dist::guarded_main(argc, argv, [&]() {
    ::testing::InitGoogleTest(&argc, argv);
    GTEST_FLAG_SET(catch_exceptions, false);
    auto comm = gigareg::dist::make_mpi_communicator();
    gigareg::dist::test::g_world = comm.get();
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    if (comm->rank() != 0) {
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new gigareg::dist::test::FailurePrinter(comm->rank()));
    }
    const int local = RUN_ALL_TESTS();
    const bool ok = comm->all(local == 0);
    if (comm->rank() == 0)
      std::printf("[distributed] %d rank(s): %s\n", comm->size(), ok ? "all passed" : "FAILED");
    gigareg::dist::test::g_world = nullptr;
    comm.reset();
    return ok ? 0 : 1;
  });
}
