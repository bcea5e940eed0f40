"""The trainer under torchrun: 2 processes, gloo on CPU, DistributedDataParallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_process_torchrun_pretrain_then_adapter(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "ddp_train_main.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    pre = [json.loads((tmp_path / "pre" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in pre] == [2, 2] and pre[0]["backend"] == "gloo"
    assert [r["step"] for r in pre] == [4, 4]
    # DDP kept the replicas identical (different data shards, different dropout streams)
    assert pre[0]["fingerprint"] == pre[1]["fingerprint"]
    assert pre[0]["trainable_sum"] == pre[1]["trainable_sum"]
    log = [json.loads(x) for x in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "pre" / "resume").glob("rng_rank*.json")) == ["rng_rank0.json", "rng_rank1.json"]
    assert (tmp_path / "pre" / "checkpoint" / "model.safetensors").is_file()
    assert (tmp_path / "pre" / "curves.png").is_file()

    ad = [json.loads((tmp_path / "ad" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ad[0]["trainable_sum"] == ad[1]["trainable_sum"] and ad[0]["step"] == 4
    assert ad[0]["fingerprint"] == ad[1]["fingerprint"] == pre[0]["fingerprint"]  # backbone frozen under DDP
    assert (tmp_path / "ad" / "adapters" / "default" / "adapter_model.safetensors").is_file()
