#!/usr/bin/env bash
# Checks that `pip install .` builds and installs a working package: a fresh venv
# (build/pip-venv), pip install . (scikit-build-core in build/pip, ccache when present), then the
# Python tests against the installed package and the tool the wheel installed, from outside the
# repository (so nothing is imported from the source or build tree). Not part of the test
# command: it builds the library a second time (minutes on 2 cores; GIGAREG_CUDA=OFF in the
# environment builds the CPU backend only, quicker).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
venv="$root/build/pip-venv"
rm -rf "$venv" "$root/build/pip"
/usr/bin/python3 -m venv "$venv"
args=(--disable-pip-version-check --config-settings=build-dir=build/pip)
if [[ -n "${GIGAREG_CUDA:-}" ]]; then args+=("--config-settings=cmake.define.GIGAREG_CUDA=$GIGAREG_CUDA"); fi
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$root")}"
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"
fi
"$venv/bin/pip" install "${args[@]}" ".[test]"
"$venv/bin/pip" install --disable-pip-version-check -q nibabel || true  # optional: conversion tests
cd "$(mktemp -d)"
"$venv/bin/python" -c "import gigareg, sys; print('gigareg', gigareg.__version__, 'from', gigareg.__file__, '; CUDA built:', gigareg.cuda_built)"
GIGAREG_CLI="$venv/bin/gigareg" GIGAREG_SHARED_DATA="$root/../shared/data" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests"
