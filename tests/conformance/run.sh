#!/usr/bin/env bash
# CTest's entry to the conformance suite: PYTHON SCRIPT ARGS... with a skip (77) and a message
# when the test Python environment is missing (scripts/install-test-python.sh makes it).
python=$1
shift
if [[ ! -x $python ]]; then
  echo "SKIP: no test Python at $python (bash scripts/install-test-python.sh)"
  exit 77
fi
exec "$python" "$@"
