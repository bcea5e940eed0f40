#!/usr/bin/env bash
# Repeat CI on a fresh clone while the machine is busy: is the suite green every time?
#
#   scripts/ci_soak.sh [N] [full|ros]      (default: 10 full)
#
# Clones the committed HEAD of this repository into a temporary directory, starts ONE CPU-bound
# process that runs for the whole soak (the "ordinary load" of a developer's machine or a
# shared CI runner), then runs N times in a row:
#   full: `bash .ci/run`                       (= make test: set-up + the whole suite)
#   ros:  `make test PYTEST_ARGS=tests/ros`    (the ROS integration tests only, not the other Pythons)
# The first run sets the clone up from nothing (venv, dependencies, colcon build); the others
# reuse that set-up, as a CI machine with a cache would. Prints one line per run (exit status,
# wall time, pytest's summary line) and a final tally; logs stay in the printed directory.
# SOAK_LOAD_PID=PID: that running CPU-bound process (a long training run, say) is the load instead;
# each run's line says whether it was still running at the run's end.
# Exit status 1 when any run failed.
set -euo pipefail

N="${1:-10}"
MODE="${2:-full}"
case "$MODE" in full|ros) ;; *) echo "usage: $0 [N] [full|ros]" >&2; exit 2 ;; esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vla_ci_soak.XXXXXX")"
git clone -q "$ROOT" "$WORK/repo"
echo "soak: $N x $MODE on a fresh clone of $(git -C "$ROOT" rev-parse --short HEAD) in $WORK, with 1 CPU-bound process${SOAK_LOAD_PID:+ (pid $SOAK_LOAD_PID)}"

if [ -n "${SOAK_LOAD_PID:-}" ]; then
  LOAD="$SOAK_LOAD_PID"
  kill -0 "$LOAD" 2>/dev/null || { echo "SOAK_LOAD_PID=$LOAD is not running" >&2; exit 2; }
else
  python3 -c 'while True: pass' &
  LOAD=$!
  trap 'kill $LOAD 2>/dev/null || true' EXIT
fi

failed=0
for i in $(seq 1 "$N"); do
  log="$WORK/run_$i.log"
  start=$(date +%s)
  set +e
  if [ "$MODE" = full ]; then
    (cd "$WORK/repo" && bash .ci/run) >"$log" 2>&1
  else
    (cd "$WORK/repo" && TEST_PYTHONS="" make test PYTEST_ARGS="tests/ros") >"$log" 2>&1
  fi
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  summary="$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | xargs || true)"
  load="$(kill -0 "$LOAD" 2>/dev/null && echo "load on" || echo "LOAD GONE")"
  printf 'run %2d/%d: exit %d in %4d s (%s)  %s\n' "$i" "$N" "$rc" "$secs" "$load" "${summary:-(no pytest summary; see $log)}"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
done
echo "soak: $((N - failed))/$N green ($MODE); logs in $WORK"
[ "$failed" -eq 0 ]
