#!/usr/bin/env bash
# The Python environment of the tests that compare gigareg with independent tools: a virtual
# environment at .venv-test/ (ignored by git) holding ANTsPy (antspyx from PyPI: ANTs' own
# antsApplyTransforms and Jacobian code, for tests/conformance). Idempotent and quick once made;
# the first time it downloads about 100 MB (pip caches them). Tests that need it skip with a
# message where it is absent (no network, GIGAREG_SKIP_TEST_PYTHON=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-test
pins=(antspyx==0.6.3)
if [[ -n ${GIGAREG_SKIP_TEST_PYTHON:-} ]]; then
  echo "install-test-python: skipped (GIGAREG_SKIP_TEST_PYTHON is set)"
  exit 0
fi
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c "import ants" 2> /dev/null; then
  echo "install-test-python: $venv has ANTsPy"
  exit 0
fi
echo "install-test-python: making $venv (${pins[*]})"
python3 -m venv "$venv"
if ! "$venv/bin/python" -m pip install -q "${pins[@]}"; then
  echo "install-test-python: pip could not install ${pins[*]}; the conformance tests will skip" >&2
  exit 0
fi
echo "install-test-python: done"
