#pragma once
// Helpers for GoogleTest suites that run in every rank of an MPI job (mpi_test_main.cpp).
//
// Every rank runs every test; a check that could differ between ranks must be agreed by all of
// them before a test reacts to it (agree / EXPECT_ALL_RANKS), so that no rank skips a collective
// the others are waiting in. Fatal assertions (ASSERT_*) are only for conditions that are the same
// on every rank. An exception aborts the whole job (gtest does not catch them here; see main).

#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <string>

#include "gigareg/distributed/communicator.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::dist::test {

/// The world communicator (MPI, host buffers) of this test run.
Communicator& world();

/// True on every rank iff `ok` is true on every rank; a rank where it is false says so on stderr.
inline bool agree(bool ok, const std::string& what) {
  if (!ok) std::fprintf(stderr, "[rank %d] check failed: %s\n", world().rank(), what.c_str());
  return world().all(ok);
}

/// A shard of `whole` as a rank holds it before its first halo exchange: the voxels of `owned`
/// copied, every other voxel of `box` NaN (so an exchange that misses a voxel shows).
inline Volume<float> poisoned_shard(const Volume<float>& whole, const Box& box, const Box& owned) {
  Volume<float> v(whole.geometry(), box, whole.components());
  v.fill(std::numeric_limits<float>::quiet_NaN());
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = owned.lo.z; k < owned.hi().z; ++k)
      for (index_t j = owned.lo.y; j < owned.hi().y; ++j)
        for (index_t i = owned.lo.x; i < owned.hi().x; ++i) v(i, j, k, c) = whole(i, j, k, c);
  return v;
}

}  // namespace gigareg::dist::test

/// EXPECT that `cond` holds on every rank (all ranks evaluate it and agree).
#define EXPECT_ALL_RANKS(cond) \
  EXPECT_TRUE(::gigareg::dist::test::agree(static_cast<bool>(cond), #cond))
