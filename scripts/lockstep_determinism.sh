#!/usr/bin/env bash
# Lockstep determinism under message loss, at scale: N full episodes of the bundled model
# (coffee-button, adapter coffee_button) through the simulator bridge and the policy node with a
# relay between them that drops frames, joint states and answers; every episode must equal the
# in-process evaluation on the same seed bit for bit (chunks, steps, outcome).
#
#   scripts/lockstep_determinism.sh [N]      (default 50; run inside `eval "$(make -s env)"`)
#
# The same test runs in `make test` with 3 short episodes of a tiny model
# (tests/ros/test_sim_node.py::test_lockstep_under_message_loss_equals_the_in_process_evaluation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export VLA_LOCKSTEP_EPISODES="${1:-50}" VLA_LOCKSTEP_MODEL=bundled OMP_NUM_THREADS=1
exec python -m pytest -q -s -p no:cacheprovider -o timeout=7200 \
  "tests/ros/test_sim_node.py::test_lockstep_under_message_loss_equals_the_in_process_evaluation"
