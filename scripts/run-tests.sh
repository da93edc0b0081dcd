#!/usr/bin/env bash
# The test command (README, command 2): installs what is missing, builds, runs every test with
# CTest. CUDA code is compiled (for sm_90 only) when nvcc is present; GPU tests skip without a GPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
bash scripts/install-test-python.sh   # ANTsPy for the conformance tests (they skip without it)
jobs=$(nproc)
cmake --preset ci
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs" --timeout 900
