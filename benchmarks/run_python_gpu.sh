#!/usr/bin/env bash
# The Python package on the GPU machine (issue 19): builds the extension module there (its
# Python is not this project's Debian one), runs the PyTorch tests on CUDA tensors and the
# training-step benchmark. The GPU machine has PyTorch but nothing can be fetched there: carry
# DEVBIN (default .devsys) holding itk.tar.gz and deps.tar.gz (scripts/pack-device-deps.sh) and
# whl/ with the nanobind wheel (`pip download --no-deps -d .devsys/whl nanobind==<version>`).
#
#   bash benchmarks/run_python_gpu.sh build   # the module only (CPU; may overlap GPU work)
#   bash benchmarks/run_python_gpu.sh test    # pytest (CPU and CUDA tests) and the benchmark
#   bash benchmarks/run_python_gpu.sh         # both
# Logs and benchmark numbers go to $OUT (default ./gpu-out).
set -uo pipefail
d=${DEVBIN:-.devsys}
out=${OUT:-$PWD/gpu-out}
build=${PYBUILD:-/tmp/pybuild}
what=${1:-all}
mkdir -p "$out"
[[ -d /opt/itk ]] || tar -xzf "$d/itk.tar.gz" -C / --no-same-owner
[[ -d /opt/gdeps ]] || tar -xzf "$d/deps.tar.gz" -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$d"/whl/*.whl 2> /dev/null
export PYTHONPATH=/tmp/site

if [[ $what == build || $what == all ]]; then
  start=$(date +%s)
  # Only what the module needs: no tests, tools' tests, benchmarks, examples or MPI layer.
  cmake -S . -B "$build" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_PYTHON=ON -DGIGAREG_BUILD_TESTS=OFF \
    -DGIGAREG_BUILD_BENCHMARKS=OFF -DGIGAREG_BUILD_EXAMPLES=OFF -DGIGAREG_DISTRIBUTED=OFF \
    -DCMAKE_PROJECT_INCLUDE=/opt/gdeps/share/cmake/gigareg-device-hdf5.cmake \
    -DPython_EXECUTABLE="$(command -v python3)" > "$out/pybuild.log" 2>&1 &&
    cmake --build "$build" --target _gigareg -j"${JOBS:-12}" >> "$out/pybuild.log" 2>&1
  rc=$?
  echo "python module build: rc $rc in $(($(date +%s) - start)) s"
  ((rc == 0)) || { grep -E "error|Error" "$out/pybuild.log" | head -20; exit 1; }
fi

if [[ $what == test || $what == all ]]; then
  export PYTHONPATH=$build/python:/tmp/site PYTHONUNBUFFERED=1
  python3 -c "import torch, gigareg; print('torch', torch.__version__, torch.cuda.get_device_name(), '| gigareg cuda_built', gigareg._gigareg.cuda_built)"
  python3 -m pytest -q -p no:cacheprovider python/tests/test_torch.py python/tests/test_torch_cuda.py \
    > "$out/pytest_torch.log" 2>&1
  echo "pytest test_torch.py test_torch_cuda.py: rc $? $(tail -1 "$out/pytest_torch.log")"
  python3 benchmarks/train_step_torch.py --pair "$d/data" --json "$out/train_step.json" ${PROFILE:+--profile} 2>&1 |
    tee "$out/train_step.log"
fi
