#!/usr/bin/env bash
# The main job (`make demo`), run inside the project env: the simulator bridge and the policy
# node as separate processes on loopback DDS, 3 episodes of each of the bundled model's 3 tasks,
# adapter switched between tasks; then the same seeds through the executor on a real-time simulator;
# prints progress and the final tables; records each lockstep episode as a bag and renders
# runs/demo/<task>.mp4 and runs/demo/demo.gif (docs/demo.gif is a copy of it).
# Extra arguments go to `vla-adapter demo` (e.g. --quick, --compare-in-process, --episodes 5).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec vla-adapter demo --out runs/demo --compare-in-process --executor temporal_ensemble "$@"
