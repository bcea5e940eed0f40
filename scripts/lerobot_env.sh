#!/usr/bin/env bash
# Makes (once) and prints the path of the separate LeRobot venv, .venv-lerobot, for the tests and
# tools that must run LeRobot's own code (issue 17: LeRobotDataset both ways; issue 19: SmolVLA).
# LeRobot pins torch < 2.11 and transformers < 5 (requirements/lerobot.txt), so it cannot live in
# the main venv. Stamped like setup.sh: a rerun with nothing changed only prints the path.
#
#   py="$(scripts/lerobot_env.sh)/bin/python"      # ~2 min and ~8.4 GB the first time
set -euo pipefail
TAG=lerobot-env
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="${VLA_LEROBOT_VENV:-$ROOT/.venv-lerobot}"
MAIN_PY="${VLA_VENV:-$ROOT/.venv}/bin/python"

[ -x "$MAIN_PY" ] || die "the main venv is missing ($MAIN_PY): run make setup first"
base_py="$("$MAIN_PY" -c 'import sys; print(sys._base_executable)')"
one_at_a_time lerobot
req_hash="$(cat "$ROOT/requirements/lerobot.txt" <("$base_py" -VV) | sha256sum | cut -c1-16)"
if stale lerobot "$req_hash" "$VENV/bin/python"; then
  log "creating $VENV ($("$base_py" -V 2>&1)): requirements/lerobot.txt (~2 min, ~8.4 GB)"
  rm -rf "$VENV"
  "$base_py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements/lerobot.txt" \
    >"$STAMPS/lerobot.pip.log" 2>&1 \
    || { tail -20 "$STAMPS/lerobot.pip.log" >&2; rm -rf "$VENV"; die "pip install failed (log: build/stamps/lerobot.pip.log)"; }
  echo "$req_hash" > "$STAMPS/lerobot"
fi
echo "$VENV"
