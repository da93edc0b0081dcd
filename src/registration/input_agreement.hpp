#pragma once
// The processes of a distributed registration must read the same input files (not installed).

#include <string>
#include <vector>

#include "gigareg/partition.hpp"

namespace gigareg::reg {

/// Collective: every process fingerprints each of `paths` (empty names are skipped; the list is
/// the same on every process: it comes from the command line) and the fingerprints are compared
/// across processes. If any differ, every process throws Error(InvalidInput) naming the first
/// such file, before any other collective: processes started in different working directories,
/// or on hosts whose copies differ, would otherwise hang (grids that differ) or mix data silently.
void require_same_inputs(const Partition& part, const std::vector<std::string>& paths);

}  // namespace gigareg::reg
