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
  # 8.4 GB installed, 4.3 GB of it CUDA libraries in a dozen wheels. One pip call for everything holds
  # every unpacked download in TMPDIR at once (peak 12.5 GiB, measured); so pip resolves the set first
  # (--report, no downloads), then takes torch and its CUDA wheels one call each, then the rest: the peak
  # is the venv plus the biggest wheel. No pip cache on top.
  need_disk 10 "$VENV" "${TMPDIR:-/tmp}"
  "$base_py" -m venv "$VENV"
  pip_() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "$@" >>"$STAMPS/lerobot.pip.log" 2>&1 \
    || { tail -20 "$STAMPS/lerobot.pip.log" >&2; rm -rf "$VENV"; die "pip install failed (log: build/stamps/lerobot.pip.log)"; }; }
  : >"$STAMPS/lerobot.pip.log"
  pip_ --dry-run --ignore-installed --report "$STAMPS/lerobot.report.json" -r "$ROOT/requirements/lerobot.txt"
  for big in $("$VENV/bin/python" -c 'import json, sys
for r in json.load(open(sys.argv[1]))["install"]:
    m = r["metadata"]
    if m["name"].startswith(("nvidia-", "triton", "torch")): print(m["name"] + "==" + m["version"])' \
      "$STAMPS/lerobot.report.json"); do
    pip_ --no-deps "$big"
  done
  pip_ -r "$ROOT/requirements/lerobot.txt"
  echo "$req_hash" > "$STAMPS/lerobot"
fi
echo "$VENV"
