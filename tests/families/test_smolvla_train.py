"""SmolVLA trained through the package's training loop (real LeRobot, the tiny checkpoint): adapter, LoRA, full.

Every run reads the demo bag through the package's data path and trains in the LeRobot venv's worker
(``families/smolvla/train.py`` on ``core/loop.py``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from vla_adapter_ros.core.smolvla import METHODS, checkpoint_sizes, train_smolvla, write_samples
from vla_adapter_ros.families.smolvla.bridge import run_worker

# The session's tiny SmolVLA (~10 s), then three short runs here (~6 s each in the worker).
pytestmark = pytest.mark.timeout(900)

BAGS = [Path(__file__).resolve().parents[1] / "data" / "demo_bag"]  # 32 frames
STEPS, BATCH = 8, 4


@pytest.fixture(scope="module")
def runs(smolvla_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """One run per method: 8 steps of batch 4 (one epoch of the demo bag), lr 1e-2 without warm-up."""
    root = tmp_path_factory.mktemp("smolvla_train")
    return {m: train_smolvla(smolvla_dir, BAGS, "coffee", root / m, method=m, steps=STEPS, rank=4, batch=BATCH,
                             lr=1e-2, warmup_steps=0) for m in METHODS}


def test_bag_samples_are_frames_with_the_next_chunk_of_actions(smolvla_dir: Path, tmp_path: Path) -> None:
    sizes = checkpoint_sizes(smolvla_dir)
    assert sizes == {"cameras": ["camera"], "image_size": (32, 32), "chunk_size": 8}
    n = write_samples(BAGS, tmp_path / "samples.npz", sizes["cameras"], sizes["image_size"], sizes["chunk_size"])
    with np.load(tmp_path / "samples.npz") as z:
        assert z["image.camera"].shape == (n, 3, 32, 32) and z["actions"].shape == (n, 8, 4)
        assert not z["action_is_pad"][0].any() and z["action_is_pad"][-1, 1:].all()  # chunks past the end are masked


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_the_loss(runs: dict[str, dict], method: str) -> None:
    """LeRobot's own loss on a fixed batch with fixed noise and time (the training objective without its sampling
    noise) drops by at least 10% in 8 steps; the per-step losses are logged and finite."""
    r = runs[method]
    assert r["step"] == STEPS and r["samples"] == 32 and len(r["losses"]) == STEPS and all(np.isfinite(r["losses"]))
    assert r["probe_loss_after"] < 0.9 * r["probe_loss_before"], r
    if method == "full":
        assert r["trainable"] == r["total"]
    else:
        assert 0 < r["trainable"] < r["total"] / 5
    assert r["seconds_per_step"] > 0 and r["peak_rss_bytes"] > 0


def test_adapter_and_lora_training_leave_every_backbone_tensor_bit_identical(smolvla_dir: Path,
                                                                              runs: dict[str, dict]) -> None:
    """The fingerprint (sha256 of every backbone tensor's name, shape, dtype and bytes) of the trained policy, in
    memory at the end of the run, equals the one of the checkpoint loaded from disk by another process; full
    fine-tuning, which must change it, does."""
    (original,) = run_worker("check", str(smolvla_dir))
    for method in ("adapter", "lora"):
        assert runs[method]["backbone_fingerprint"] == original["fingerprint"]
        assert runs[method]["backbone_fingerprint_after"] == original["fingerprint"], method
    assert runs["full"]["backbone_fingerprint_after"] != original["fingerprint"]


def test_each_method_writes_what_export_takes(smolvla_dir: Path, runs: dict[str, dict]) -> None:
    adapter, lora, full = (runs[m] for m in ("adapter", "lora", "full"))
    saved = json.loads((Path(adapter["artifact"]) / "adapter_config.json").read_text())
    assert saved["method"] == "bottleneck" and saved["num_parameters"] == adapter["trainable"]
    assert adapter["export"] == {"checkpoint": str(smolvla_dir), "adapter": adapter["artifact"]}
    # LoRA: the adapter files for the record, and the LoRA merged into a checkpoint (the same function)
    assert json.loads((Path(lora["out"]) / "adapters" / "coffee" / "adapter_config.json").read_text())["method"] == "lora"
    assert lora["merge_max_abs"] < 1e-5
    assert "adapter trained on it" in lora["export"]["note"] and full["export"]["checkpoint"] == full["artifact"]
    checked = run_worker("check", lora["export"]["checkpoint"], full["export"]["checkpoint"])
    assert [c["ok"] for c in checked] == [True, True], checked
    assert checked[0]["fingerprint"] != checked[1]["fingerprint"]
    assert checked[1]["fingerprint"] == full["backbone_fingerprint_after"]  # what was trained is what was saved


def test_log_csv_has_one_line_per_step(runs: dict[str, dict]) -> None:
    for method, r in runs.items():
        out = Path(r["out"])
        with (out / "log.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [int(row["step"]) for row in rows] == list(range(1, STEPS + 1)), method
        assert [float(row["loss"]) for row in rows] == r["losses"]
        assert float(rows[0]["lr"]) == pytest.approx(1e-2) and float(rows[-1]["lr"]) < float(rows[0]["lr"])  # cosine
        assert len((out / "log.jsonl").read_text().splitlines()) == STEPS
        assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_after_an_interruption_gives_the_same_result_as_one_run(smolvla_dir: Path, tmp_path: Path) -> None:
    """6 steps in one go vs 3 steps (stopped mid-epoch), then resumed: same losses, bit-identical adapter. The
    flow-matching noise and time come from torch's RNG, so this fails unless the resume state restores it too."""
    kw = dict(method="adapter", steps=6, rank=4, batch=BATCH, lr=1e-2, warmup_steps=2, save_every=2)
    one = train_smolvla(smolvla_dir, BAGS, "coffee", tmp_path / "one", **kw)
    first = train_smolvla(smolvla_dir, BAGS, "coffee", tmp_path / "two", stop_after=3, **kw)
    assert first["step"] == 3 and first["artifact"] is None and first["export"] is None
    two = train_smolvla(smolvla_dir, BAGS, "coffee", tmp_path / "two", resume=True, **kw)
    assert two["step"] == 6 and len(two["losses"]) == 6
    assert two["losses"] == one["losses"]
    a, b = (load_file(str(Path(r["artifact"]) / "adapter_model.safetensors")) for r in (one, two))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
