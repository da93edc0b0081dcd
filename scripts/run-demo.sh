#!/usr/bin/env bash
# The main job (README, command 1): installs what is missing, builds the gigareg tool, and runs
# the demo on Colin27 (from Debian's mricron-data). Builds with CUDA when a GPU is present,
# otherwise the CPU-only preset (the demo then runs on the CPU backend).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
preset=cpu-only
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then preset=release; fi
echo "run-demo: building the gigareg tool (preset $preset)"
cmake --preset "$preset" > /dev/null
cmake --build --preset "$preset" -j "$(nproc)" --target gigareg_cli
exec "build/$preset/tools/gigareg" demo --output out/demo "$@"
