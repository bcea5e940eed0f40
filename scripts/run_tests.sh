#!/usr/bin/env bash
# Runs the whole test suite (called by `make test` inside the project env).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python -m pytest "$@"
