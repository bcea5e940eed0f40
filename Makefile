# The two commands a newcomer needs:  make demo   and   make test
# Both set up whatever is missing (Debian packages, venv, pinned deps, colcon build).
SHELL := /bin/bash
.DEFAULT_GOAL := help
WITH_ENV = set -euo pipefail; eval "$$(scripts/env.sh)";

.PHONY: help setup env test test-pythons lint demo doctor

help:
	@echo "make demo   - set up and run the main job on the bundled default model"
	@echo "make test   - set up and run the whole test suite (what CI runs), test-pythons included"
	@echo "make test-pythons - the ROS-free serving tests under Python 3.10 and 3.12 (runtime-only venvs)"
	@echo "make setup  - only set up (venv, dependencies, interfaces build)"
	@echo 'eval "$$(make -s env)"  - prepare this shell (venv, interfaces, DDS on loopback)'

setup:
	@scripts/setup.sh

env:
	@scripts/env.sh

lint: setup
	@$(WITH_ENV) ruff check .
	@$(WITH_ENV) mypy --config-file mypy.ini

test: setup
	@$(WITH_ENV) scripts/run_tests.sh $(PYTEST_ARGS)

test-pythons: setup
	@$(WITH_ENV) scripts/test_pythons.sh

doctor: setup
	@$(WITH_ENV) vla-adapter doctor

demo: setup
	@$(WITH_ENV) scripts/demo.sh
