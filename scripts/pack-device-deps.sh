#!/usr/bin/env bash
# Packs what the GPU machine lacks (see ../shared/device/README.md) into .devsys/, an ignored
# folder carried with each device run:
#   .devsys/itk.tar.gz   ITK 5.2 under /opt/itk        (made by ../shared/device/pack-itk.sh)
#   .devsys/deps.tar.gz  Google Benchmark, CLI11, libdeflate, c-blosc, zstd, nlohmann-json and HDF5's
#                        headers (with its CMake targets: gigareg-device-hdf5.cmake) under /opt/gdeps
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
# HDF5 for builds there: ITK's exported targets link hdf5::hdf5 and hdf5::hdf5_cpp, whose
# find_package pack-itk.sh disables (its runtime libraries are in itk.tar.gz). Its headers, and a
# file that defines the two targets over those libraries, for -DCMAKE_PROJECT_INCLUDE=.
mkdir -p "$d/include/hdf5"
cp -a /usr/include/hdf5/serial "$d/include/hdf5/"
cat > "$d/share/cmake/gigareg-device-hdf5.cmake" <<'CMAKE'
# HDF5's imported targets on the GPU machine (scripts/pack-device-deps.sh).
foreach(_lib hdf5 hdf5_cpp)
  if(NOT TARGET hdf5::${_lib})
    add_library(hdf5::${_lib} SHARED IMPORTED)
    string(REPLACE "hdf5" "hdf5_serial" _file ${_lib})
    set_target_properties(hdf5::${_lib} PROPERTIES IMPORTED_LOCATION /opt/itk/lib/lib${_file}.so.103
                          INTERFACE_INCLUDE_DIRECTORIES /opt/gdeps/include/hdf5/serial)
  endif()
endforeach()
CMAKE
tar -czf "$root/.devsys/deps.tar.gz" -C "$stage" opt
rm -rf "$stage"
echo "packed $(du -h "$root/.devsys/deps.tar.gz" | cut -f1) into .devsys/deps.tar.gz"
