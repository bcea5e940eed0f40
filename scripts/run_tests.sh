#!/usr/bin/env bash
# Runs the whole test suite (called by `make test` inside the project env): pytest in the main
# venv (Python 3.11), then the ROS-free serving tests under Python 3.10 and 3.12
# (scripts/test_pythons.sh; TEST_PYTHONS="" skips them, e.g. for a focused PYTEST_ARGS run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# One pytest worker per core, at most 4 (VLA_TEST_WORKERS overrides; 0 = in this process): most tests
# wait on subprocesses, DDS and the simulator. Each worker leases its own ROS domain (tests/conftest.py)
# and every LeRobot test runs on one of them (xdist_group "lerobot").
workers="${VLA_TEST_WORKERS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}"
python -m pytest -n "$workers" --dist loadgroup "$@"
if [ -n "${TEST_PYTHONS-3.10 3.12}" ]; then
  scripts/test_pythons.sh
fi
