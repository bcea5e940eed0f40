"""Entry point for the 2-process torchrun test (run by tests/core/test_train_ddp.py).

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_train_main.py OUT_DIR

Pre-trains a tiny backbone, then trains an adapter on it (frozen backbone under DDP),
in the same process group; each rank writes what it ended with to OUT_DIR/<run>/rank<r>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch.distributed as dist  # noqa: E402
from core_data import TinyEpisodes, tiny_config  # noqa: E402

from vla_adapter_ros.core.config import AdapterConfig, TrainConfig  # noqa: E402
from vla_adapter_ros.core.language import LanguageEncoder  # noqa: E402
from vla_adapter_ros.core.train import train  # noqa: E402


def run(out: Path, language: LanguageEncoder, regime: str = "pretrain", init: str = ""):
    cfg = TrainConfig(
        regime=regime, init_checkpoint=init, model=tiny_config(dropout=0.1), adapter=AdapterConfig(rank=4),
        steps=4, batch_size=2, warmup_steps=1, log_every=1, save_every=2, out_dir=str(out), progress=False,
        plot=True, device="cpu",
    )
    res = train(cfg, TinyEpisodes(cfg.model, n=16), language=language)
    rank = dist.get_rank()
    info = {
        "rank": rank, "world": dist.get_world_size(), "backend": dist.get_backend(), "step": res.step,
        "fingerprint": res.model.backbone_fingerprint(),
        "trainable_sum": float(sum(p.detach().double().sum() for p in res.model.parameters() if p.requires_grad)),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    return res


def main(out: str) -> None:
    language = LanguageEncoder()
    pre = run(Path(out) / "pre", language)
    dist.barrier()
    run(Path(out) / "ad", language, "adapter", str(Path(out) / "pre" / "checkpoint"))
    assert pre.artifact is not None or dist.get_rank() != 0
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
