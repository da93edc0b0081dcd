#!/usr/bin/env bash
# The Python environment that builds and tests the Python package: build/python-venv, a venv of
# Debian's python3 that sees Debian's numpy, pytest and nibabel (install-deps.sh) and adds from
# PyPI what Debian 12 does not package: nanobind and scikit-build-core (the build requirements of
# pyproject.toml) and SimpleITK (optional: the conversion tests skip without it).
# Idempotent and quick when the venv is complete. Prints the venv's python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/build/python-venv"
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv" >&2
fi
if ! "$python" -c "import nanobind, scikit_build_core" 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check "nanobind>=2.0,<4" "scikit-build-core>=0.10" >&2
fi
if ! "$python" -c "import SimpleITK" 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check SimpleITK >&2 ||
    echo "python-env: SimpleITK not installed; its conversion tests will skip" >&2
fi
echo "$python"
