#!/usr/bin/env bash
# Packs what the GPU machine lacks (see ../shared/device/README.md) into .devsys/, an ignored
# folder carried with each device run:
#   .devsys/itk.tar.gz   ITK 5.2 under /opt/itk        (made by ../shared/device/pack-itk.sh)
#   .devsys/deps.tar.gz  Google Benchmark, CLI11, libdeflate, c-blosc, zstd and nlohmann-json under /opt/gdeps
# On the GPU machine benchmarks/run_gpu.sh unpacks both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.devsys"
grep -qx '/.devsys/' "$root/.git/info/exclude" 2>/dev/null || { mkdir -p "$root/.git/info"; echo '/.devsys/' >> "$root/.git/info/exclude"; }
[[ -f "$root/.devsys/itk.tar.gz" ]] || "$root/../shared/device/pack-itk.sh" "$root/.devsys/itk.tar.gz"
stage=$(mktemp -d); d=$stage/opt/gdeps
# Same layout as Debian's under a new prefix: the packages' CMake configs find their files
# relative to themselves.
mkdir -p "$d/include" "$d/lib/x86_64-linux-gnu/cmake" "$d/share/cmake"
cp -a /usr/include/benchmark /usr/include/CLI "$d/include/"
cp -a /usr/lib/x86_64-linux-gnu/libbenchmark* "$d/lib/x86_64-linux-gnu/"
cp -a /usr/lib/x86_64-linux-gnu/cmake/benchmark "$d/lib/x86_64-linux-gnu/cmake/"
cp -a /usr/share/cmake/CLI11 "$d/share/cmake/"
cp -a /usr/include/libdeflate.h "$d/include/"
cp -a /usr/lib/x86_64-linux-gnu/libdeflate.so* "$d/lib/x86_64-linux-gnu/"
# c-blosc (.zarr chunks) and the libraries it links that a bare image may lack; nlohmann's JSON
# is header-only.
cp -a /usr/include/blosc.h /usr/include/blosc-export.h /usr/include/zstd.h /usr/include/nlohmann "$d/include/"
cp -a /usr/lib/x86_64-linux-gnu/libblosc.so* /usr/lib/x86_64-linux-gnu/libsnappy.so* \
  /usr/lib/x86_64-linux-gnu/libzstd.so* "$d/lib/x86_64-linux-gnu/"
cp -a /usr/share/cmake/nlohmann_json "$d/share/cmake/"
tar -czf "$root/.devsys/deps.tar.gz" -C "$stage" opt
rm -rf "$stage"
echo "packed $(du -h "$root/.devsys/deps.tar.gz" | cut -f1) into .devsys/deps.tar.gz"
