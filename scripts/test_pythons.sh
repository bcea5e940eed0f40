#!/usr/bin/env bash
# The ROS-free serving path (runtime, bags, processing) under the other Pythons a robot may run:
# 3.10 (Humble, JetPack 6) and 3.12 (Jazzy). The main venv (3.11, the Kilted wheels) runs
# everything else. Each Python gets a small venv, .venv-py3.10 / .venv-py3.12, with ONLY
# requirements/runtime.txt + requirements/test.txt: no torch, no rclpy, no colcon build. Set-up
# is stamped like setup.sh, so a rerun with nothing changed goes straight to the tests.
#
# The tiny test model is exported once by the main venv (it needs torch) into build/pythons/tiny
# (re-exported when the exporter or runtime sources change) and read by every run through
# $VLA_TINY_MODEL_DIR; tests that need the PyTorch reference skip there.
#
#   scripts/test_pythons.sh                 # 3.10 and 3.12
#   TEST_PYTHONS="3.12" scripts/test_pythons.sh
#   scripts/test_pythons.sh -k serving      # extra pytest arguments
set -euo pipefail

TAG=test-pythons
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PYTHONS="${TEST_PYTHONS-3.10 3.12}"
MAIN_PY="${VLA_VENV:-$ROOT/.venv}/bin/python"
TINY="$ROOT/build/pythons/tiny"
# ROS-free tests that run on a serving-only install (the rest need torch, rclpy or the colcon build).
TESTS=(tests/runtime tests/bags/test_bag_episodes.py tests/test_processing.py)
mkdir -p "$ROOT/build/pythons"


find_python() {  # python<version> on PATH if it runs (a pyenv shim may not), else the newest pyenv build
  local v="$1" p
  for p in "$(command -v "python$v" 2>/dev/null || true)" \
           "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)"; do
    if [ -n "$p" ] && "$p" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# --- the tiny model, exported by the main venv -------------------------------------------------
[ -x "$MAIN_PY" ] || die "the main venv is missing ($MAIN_PY): run make setup first"
src_hash="$(cd "$ROOT" && find vla_adapter_ros/core vla_adapter_ros/runtime vla_adapter_ros/processing.py \
  tests/runtime/runtime_helpers.py -name '*.py' -type f | sort | xargs cat | sha256sum | cut -c1-16)"
if stale pythons-tiny "$src_hash" "$TINY/models/tiny/manifest.json"; then
  log "exporting the tiny test model with the main venv"
  rm -rf "$TINY"
  OMP_NUM_THREADS=1 PYTHONPATH="$ROOT" "$MAIN_PY" "$ROOT/tests/runtime/runtime_helpers.py" "$TINY" >/dev/null
  echo "$src_hash" > "$STAMPS/pythons-tiny"
fi

status=0
for v in $PYTHONS; do
  py="$(find_python "$v")" || die "Python $v not found (PATH or pyenv); install it, or choose with TEST_PYTHONS=\"...\""
  venv="$ROOT/.venv-py$v"
  req_hash="$(cd "$ROOT" && cat requirements/runtime.txt requirements/test.txt <("$py" -VV) | sha256sum | cut -c1-16)"
  if stale "py$v" "$req_hash" "$venv/bin/python"; then
    log "creating $venv ($("$py" -V 2>&1)): runtime.txt + test.txt"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/test.txt" >"$ROOT/build/pythons/py$v.pip.log" 2>&1 \
      || { tail -20 "$ROOT/build/pythons/py$v.pip.log" >&2; rm -rf "$venv"; die "pip install failed for Python $v (log: build/pythons/py$v.pip.log)"; }
    echo "$req_hash" > "$STAMPS/py$v"
  fi
  log "Python $v: ${TESTS[*]}"
  # The package from the source tree (no install step); OMP_NUM_THREADS=1: shared 2-core machines.
  (cd "$ROOT" && PYTHONPATH="$ROOT" VLA_TINY_MODEL_DIR="$TINY/models/tiny" OMP_NUM_THREADS=1 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@") || status=1
done
exit $status
