# Sourced by the set-up scripts (setup.sh, test_pythons.sh, lerobot_env.sh) after they set TAG:
# the repository root, the stamp folder, log/die with the script's tag, and the stamp check that
# makes a rerun with nothing changed skip the work.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMPS="$ROOT/build/stamps"
mkdir -p "$STAMPS"
log() { printf '\033[1m[%s]\033[0m %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$TAG" "$*" >&2; exit 1; }
# stale NAME HASH PATH: true when stamp NAME does not hold HASH or PATH (what it made) is missing.
stale() { [ "$(cat "$STAMPS/$1" 2>/dev/null)" != "$2" ] || [ ! -e "$3" ]; }
# one_at_a_time NAME: holds an exclusive lock on build/stamps/NAME.lock until the script exits, so two
# callers at once (parallel test workers, a test beside a tool) never build the same thing together:
# the second waits, then finds the stamp fresh.
one_at_a_time() { exec 9>"$STAMPS/$1.lock"; flock 9; }
# need_disk GIB PATH...: dies, naming the folder and both sizes, unless every PATH's file system has GIB
# GiB free: a big install that runs out of disk half-way leaves a broken venv and pip's OSError deep in
# a log, where this says what is wrong before anything is written.
need_disk() {
  local gib="$1" p free; shift
  for p in "$@"; do
    while [ ! -e "$p" ]; do p="$(dirname "$p")"; done
    free=$(( $(df -Pk "$p" | awk 'NR==2 {print $4}') / 1048576 ))
    [ "$free" -ge "$gib" ] || die "needs ${gib} GiB free on the disk of $p, has ${free} GiB: free some space and rerun"
  done
}
