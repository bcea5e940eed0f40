"""Adapter r=16 vs full fine-tuning per held-out task and training seed, as a markdown table.

Seed 0 is the benchmark's own run (runs/metaworld/eval); seeds 1 and 2 come from
scripts/experiments/seeds_main.sh (runs/exp/seeds_main). Run from the repository root.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ["coffee-button", "faucet-open", "handle-press", "plate-slide", "basketball"]
METHODS = ("adapter_r16", "full")
SEEDS = (0, 1, 2)


def successes(task: str, method: str, seed: int) -> list[bool] | None:
    if seed == 0:
        path = Path("runs/metaworld/eval") / f"{task}-v3" / f"{method}.json"
    else:
        path = Path("runs/exp/seeds_main") / task / f"{method}-s{seed}" / "eval" / "results.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    result = data[0] if isinstance(data, list) else data
    return [bool(e["success"]) for e in result["results"]][:30]


def main() -> None:
    print("| method | training seed | " + " | ".join(TASKS) + " | mean |")
    print("|---|---|" + "---|" * (len(TASKS) + 1))
    means: dict[tuple[str, int], float] = {}
    for method in METHODS:
        for seed in SEEDS:
            rows = [successes(t, method, seed) for t in TASKS]
            if any(r is None for r in rows):
                print(f"| {method} | {seed} | incomplete |")
                continue
            means[(method, seed)] = float(np.mean([sum(r) / len(r) for r in rows]))
            cells = " | ".join(f"{sum(r)}/{len(r)}" for r in rows)
            print(f"| {method} | {seed} | {cells} | {means[(method, seed)]:.2f} |")
    for seed in SEEDS:
        if (METHODS[0], seed) in means and (METHODS[1], seed) in means:
            print(f"seed {seed}: adapter / full {means[(METHODS[0], seed)] / means[(METHODS[1], seed)]:.3f}")
    a = [v for (m, _), v in means.items() if m == METHODS[0]]
    f = [v for (m, _), v in means.items() if m == METHODS[1]]
    if a and f:
        print(f"over seeds: adapter {np.mean(a):.3f}, full {np.mean(f):.3f}, ratio {np.mean(a) / np.mean(f):.3f}")


if __name__ == "__main__":
    main()
