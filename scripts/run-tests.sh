#!/usr/bin/env bash
# The test command (README, command 2): installs what is missing, builds, runs every test with
# CTest. CUDA code is compiled (for sm_90 only) when nvcc is present; GPU tests skip without a GPU.
# The Python package's extension module is built in the same tree (build/python-venv has
# nanobind) and its pytest files run as CTest tests (label python) against the build tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
bash scripts/install-test-python.sh   # ANTsPy for the conformance tests (they skip without it)
python=$(bash scripts/python-env.sh)  # nanobind for the Python package's module and its tests
jobs=$(nproc)
cmake --preset ci -DPython_EXECUTABLE="$python"
cmake --build --preset ci -j "$jobs"
ctest --preset ci -j "$jobs" --timeout 900
