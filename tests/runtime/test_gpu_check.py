"""benchmarks/gpu_check.py: the check a robot user runs. Here (no GPU) it must run its CPU rows,
list every GPU row as not run with the reason, import no torch, and stay short."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
RUN = r"""
import json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "rclpy": "rclpy" in sys.modules}))
"""


def run_gpu_check(model_dir, out, *args):
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(SCRIPT), "--model-dir", str(model_dir), "--out", str(out), *args],
        capture_output=True, text=True, timeout=120,
    )
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == {"code": 0, "torch": False, "rclpy": False}, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "gpu_check.json").read_text())


def test_gpu_check_runs_its_rows_and_names_what_it_could_not_run(model_dir, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "out"
    proc, report = run_gpu_check(model_dir, out, "--frames", "30", "--parity-frames", "3", "--providers",
                                 "tensorrt,cuda,cpu")
    rows = report["rows"]
    cpu = [r for r in rows if r["provider"] == "CPUExecutionProvider"]
    # The CPU rows: latency (plain and iobinding), switch, hot-add; and the GPU rows run on the CPU
    # (the --providers cpu self-test) pass their parity and collision checks.
    checks = {r["check"] for r in cpu}
    assert {"latency infer() plain", "latency infer() iobinding", "first frame after a switch",
            "hot-add one adapter (shared)", "cold start", "warm start", "merged adapters, one cache"} <= checks
    assert all(r["ok"] is not False for r in rows), [r for r in rows if r["ok"] is False]
    assert any(r["check"].startswith("parity fp32") and r["ok"] for r in cpu)
    for name in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        gpu = [r for r in rows if r["provider"] == name]
        if name in ort.get_available_providers() and any(r["result"] != "not run" for r in gpu):
            continue  # a machine where this provider works
        assert gpu and all(r["result"] == "not run" and name in r["why"] or "initialise" in r["why"] for r in gpu)
        assert f"{name}: rows not run:" in proc.stdout
    assert report["failed"] == 0 and report["versions"]["onnxruntime"] == ort.__version__


def test_gpu_check_serves_a_two_camera_model(multiview_exported, tmp_path):
    """Its rows feed one frame per camera (the CPU self-test rows here: parity, switch, collisions)."""
    _, report = run_gpu_check(multiview_exported[0], tmp_path / "out", "--frames", "10", "--parity-frames", "2",
                              "--providers", "cpu")
    assert report["cameras"] == ["front", "wrist"] and report["failed"] == 0
    ran = {r["check"] for r in report["rows"] if r["result"] != "not run"}
    assert {"latency infer() iobinding", "merged adapters, one cache", "parity fp16 model file"} <= ran
    assert any(r["check"].startswith("parity fp32") and r["ok"] for r in report["rows"])


def test_serving_modes_benchmark_runs_every_variant_on_the_cpu(model_dir, tmp_path):
    """benchmarks/bench_serving_modes.py (run on a lent H200 for docs/BENCHMARKS.md): its CPU
    self-test. Every variant must give the plain path's actions bit for bit on the CPU provider."""
    script = SCRIPT.parent / "bench_serving_modes.py"
    proc = subprocess.run([sys.executable, str(script), "--model-dir", str(model_dir), "--frames", "20",
                           "--block", "10", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["variant"]: r for r in json.loads((tmp_path / "serving_modes.json").read_text())["rows"]}
    assert set(rows) >= {"plain", "bound", "bound_cpu_in", "bound_nosync", "GraphRunner"}
    assert all(r["max_abs_diff"] == 0.0 for r in rows.values()), rows
