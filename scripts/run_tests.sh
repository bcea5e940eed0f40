#!/usr/bin/env bash
# Runs the whole test suite (called by `make test` inside the project env): pytest in the main
# venv (Python 3.11), then the ROS-free serving tests under Python 3.10 and 3.12
# (scripts/test_pythons.sh; TEST_PYTHONS="" skips them, e.g. for a focused PYTEST_ARGS run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python -m pytest "$@"
if [ -n "${TEST_PYTHONS-3.10 3.12}" ]; then
  scripts/test_pythons.sh
fi
