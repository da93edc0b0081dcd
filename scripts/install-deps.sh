#!/usr/bin/env bash
# Installs gigareg's build and test dependencies from Debian's packages (scripts/python-env.sh
# adds the Python build tools that Debian 12 does not package).
# Idempotent and quick when everything is present: it asks dpkg first and runs apt only for what
# is missing. CUDA 13 (nvcc, NCCL) is expected from the machine image; without nvcc the build
# configures CPU-only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libinsighttoolkit5-dev   # ITK 5: image and transform I/O, reference resampling in tests
  libeigen3-dev            # small linear algebra (affine maps, moments)
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev         # Google Benchmark
  libcli11-dev             # command-line parsing
  libopenmpi-dev openmpi-bin  # distributed layer (MPI bootstrap, host communicator)
  slurmctld slurmd slurm-client  # tests/distributed/slurm_one_node.sh: srun on a one-node
                                 # Slurm that the test starts itself (munge comes as a dependency)
  libpmix-dev              # srun --mpi=pmix: Slurm's mpi/pmix plugin dlopens pmix2/lib/libpmix.so,
                           # which only the -dev package has (libopenmpi-dev depends on it too)
  zlib1g-dev
  libdeflate-dev           # parallel block gzip for .nii.gz (src/io/gzip_blocks.cpp)
  libblosc-dev             # OME-Zarr chunk compression (src/io/zarr/codec.cpp)
  libzstd-dev              # Zarr v3 (NGFF 0.5) zstd chunks (src/io/zarr/codec.cpp)
  nlohmann-json3-dev       # OME-Zarr .zarray/.zattrs/.zgroup metadata (src/io/zarr/)
  python3-zarr python3-numcodecs python3-numpy  # tests: an independent reader of gigareg's .zarr
  mricron-data             # Colin27 T1 + AAL labels for the demo
  python3                  # tests/malformed/malformed_inputs.py (standard library only)
  clang                    # libFuzzer targets (tests/fuzz, GIGAREG_FUZZ); the build itself uses GCC
  python3-dev python3-venv # the Python package (python/; nanobind comes from PyPI: python-env.sh)
                           # and the tests' ANTsPy environment (install-test-python.sh)
  python3-pytest python3-nibabel
  python3-torch            # gigareg.torch's autograd functions and their tests (CPU PyTorch 1.13)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
