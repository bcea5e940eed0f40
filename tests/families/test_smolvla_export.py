"""SmolVLA export: prefix + denoise graphs with adapter inputs reproduce LeRobot's predict_action_chunk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vla_adapter_ros.families.smolvla.bridge import run_worker
from vla_adapter_ros.runtime.smolvla import SmolVLANetwork


def test_graphs_match_lerobot_for_the_backbone_and_each_adapter(smolvla_dir: Path, smolvla_adapters: dict[str, dict],
                                                                tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    run_worker("export", str(smolvla_dir), "--out", str(stage),
               *(x for a in smolvla_adapters.values() for x in ("--adapter", a["adapter"])))
    meta = json.loads((stage / "smolvla.json").read_text())
    so = ort.SessionOptions()
    so.log_severity_level = 3
    net = SmolVLANetwork(ort.InferenceSession(str(stage / "graphs/prefix.onnx"), so),
                         ort.InferenceSession(str(stage / "graphs/denoise.onnx"), so),
                         meta["num_steps"], meta["chunk_size"], meta["max_action_dim"])
    ref = np.load(stage / "reference.npz")
    feeds = {k: ref[k] for k in ("image.camera", "lang_tokens", "lang_mask", "state")}
    backbone = ref["actions."]
    for name in ("", *smolvla_adapters):
        tensors = {} if not name else {"adapter." + k: v for k, v in np.load(stage / f"adapter.{name}.npz").items()}
        got = net.sample(feeds, ref["noise"], tensors)[:, :, : meta["action_dim"]]
        want = ref[f"actions.{name}"]
        assert np.abs(got - want).max() <= 1e-4, name
        if name:
            assert np.abs(want - backbone).max() > 1e-2  # the adapter matters, so the parity above means something
