"""The trainer: five regimes on the same data, explicit freezing, logs, exact resume, CLI config."""

from __future__ import annotations

import json

import pytest
import torch
from core_data import TinyEpisodes, tensors_equal, tiny_config
from safetensors.torch import load_file

from vla_adapter_ros import processing as P
from vla_adapter_ros.core.adapters import add_tuner, load_adapter, set_adapter
from vla_adapter_ros.core.checkpoint import load_checkpoint
from vla_adapter_ros.core.config import TUNER_REGIMES, AdapterConfig, LoraConfig, PrefixConfig, TrainConfig
from vla_adapter_ros.core.loop import lr_factor
from vla_adapter_ros.core.model import VLAPolicy, example_inputs
from vla_adapter_ros.core.train import load_train_config, train
from vla_adapter_ros.core.train_state import load_model_tensors

STATS = {
    "proprio": P.Normalizer([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]),
    "actions": P.Normalizer([0.1, -0.1, 0.0, 0.5], [0.2, 0.2, 0.2, 0.5]),
}


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    base = dict(model=tiny_config(), steps=6, batch_size=4, warmup_steps=2, log_every=1, save_every=0,
                out_dir=str(tmp_path / name), progress=False, plot=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory, language):
    """A tiny pre-trained backbone (pretrain regime, 6 steps) shared by the fine-tuning tests."""
    tmp = tmp_path_factory.mktemp("pretrain")
    cfg = _cfg(tmp, "pre", plot=True, eval_every=3)
    res = train(cfg, TinyEpisodes(cfg.model, n=16), TinyEpisodes(cfg.model, n=8, seed=5), stats=STATS, language=language)
    assert res.artifact == tmp / "pre" / "checkpoint"
    return res.artifact


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 2, 10, 0.1) for s in range(11)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0
    assert all(a >= b for a, b in zip(f[2:], f[3:], strict=False))
    assert abs(f[10] - 0.1) < 1e-12


def test_pretrain_writes_checkpoint_logs_and_curves(backbone_dir):
    out = backbone_dir.parent
    model = load_checkpoint(backbone_dir)
    assert model.stats["actions"].mean.tolist() == pytest.approx([0.1, -0.1, 0.0, 0.5])
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    lines = [r for r in records if "loss" in r]
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert [(r["step"], r["val_loss"] > 0) for r in records if "val_loss" in r] == [(3, True), (6, True)]
    assert lines[0]["lr"] < lines[1]["lr"]  # warm-up
    assert all(set(r) >= {"loss", "l1", "mse", "lr", "grad_norm", "samples_per_s"} for r in lines)
    assert (out / "log.csv").read_text().splitlines()[0].startswith("step,epoch,loss")
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "total" in (out / "parameter_report.txt").read_text()
    assert TrainConfig.load(out / "train_config.json").regime == "pretrain"


@pytest.mark.parametrize("regime", ["adapter", "lora", "prefix", "head_only", "full"])
def test_fine_tuning_regimes_touch_only_their_parameters(tmp_path, backbone_dir, language, regime):
    init = load_checkpoint(backbone_dir).backbone_state_dict()
    cfg = _cfg(tmp_path, regime, regime=regime, init_checkpoint=str(backbone_dir), adapter_name="task1",
               adapter=AdapterConfig(rank=4), lora=LoraConfig(rank=2), prefix=PrefixConfig(n_tokens=3))
    res = train(cfg, TinyEpisodes(cfg.model, n=16, seed=1), language=language)
    assert res.step == 6 and res.loss == res.loss  # finite
    report = json.loads((tmp_path / regime / "parameter_report.json").read_text())
    trainable = {r["name"]: r["trainable"] for r in report["rows"]}
    if regime in TUNER_REGIMES:
        assert res.artifact == tmp_path / regime / "adapters" / "task1"
        assert trainable["vision"] == trainable["fusion"] == trainable["head"] == 0
        assert trainable["task1"] == trainable["total"] == res.trainable_params > 0
        # every backbone tensor is bit-identical after training (the resume state holds the whole model)
        state = load_file(str(tmp_path / regime / "resume" / "model.safetensors"))
        backbone = {k[len("backbone/"):]: v for k, v in state.items() if k.startswith("backbone/")}
        assert tensors_equal(backbone, init)
        assert any(k.startswith("tuner/task1/") for k in state)
        # the saved adapter on the original backbone reproduces the trained model exactly
        model = load_checkpoint(backbone_dir).eval()
        x = example_inputs(model.config, 2)
        base_out = model.predict(*x)
        load_adapter(model, res.artifact, activate=True)
        trained = VLAPolicy(model.config)
        add_tuner(trained, "task1", cfg.tuner)
        load_model_tensors(trained, state)
        set_adapter(trained, "task1")
        assert torch.equal(trained.eval().predict(*x), model.predict(*x))
        assert not torch.equal(model.predict(*x), base_out)
    else:
        after = load_checkpoint(res.artifact).backbone_state_dict()
        changed = {k for k in init if not torch.equal(init[k], after[k])}
        if regime == "head_only":
            assert changed == {"head.out.weight", "head.out.bias"}
            assert trainable["head"] == trainable["total"] == 32 * 4 + 4
        else:
            assert {"vision.patch_embed.weight", "fusion.readout", "head.out.weight"} <= changed
            assert not any("_mean" in k or "_std" in k for k in changed)  # statistics are not trained


def test_resume_gives_the_same_result_as_one_run(tmp_path, language):
    model_cfg = tiny_config(dropout=0.1)  # dropout: the RNG state must be restored too
    data = TinyEpisodes(model_cfg, n=12)  # 3 steps per epoch: the split falls mid-epoch
    full = _cfg(tmp_path, "one", model=model_cfg, steps=7, save_every=2)
    a = train(full, data, stats=STATS, language=language)
    split = _cfg(tmp_path, "two", model=model_cfg, steps=7, save_every=2)
    first = train(split, data, stats=STATS, language=language, stop_after=4)
    assert first.step == 4 and first.artifact is None
    resumed = TrainConfig.from_dict({**split.to_dict(), "resume": True})
    b = train(resumed, data, stats=STATS, language=language)
    assert b.step == 7
    assert tensors_equal(load_checkpoint(a.artifact).backbone_state_dict(), load_checkpoint(b.artifact).backbone_state_dict())
    log_a = [json.loads(x)["loss"] for x in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert log_a == log_b and len(log_a) == 7
    with pytest.raises(ValueError, match="steps"):
        train(TrainConfig.from_dict({**resumed.to_dict(), "steps": 9}), data, stats=STATS, language=language)


def test_train_config_file_with_overrides(tmp_path):
    cfg = _cfg(tmp_path, "x", regime="adapter", init_checkpoint="ck")
    path = cfg.save(tmp_path / "train.yaml")
    got = load_train_config(path, ["adapter.rank=16", "steps=3", 'adapter.positions=["ffn"]', "out_dir=elsewhere"])
    assert (got.adapter.rank, got.steps, got.adapter.positions, got.out_dir) == (16, 3, ("ffn",), "elsewhere")
    with pytest.raises(ValueError, match="rnak"):
        load_train_config(path, ["adapter.rnak=2"])


def test_cli_registers_train():
    from vla_adapter_ros.cli import build_parser

    args = build_parser().parse_args(["train", "--config", "c.yaml", "--set", "steps=2", "--resume"])
    assert args._command == "train" and args.overrides == ["steps=2"] and args.resume


def test_pretrain_takes_statistics_from_the_dataset(tmp_path, language):
    data = TinyEpisodes(tiny_config(), n=8)
    data.stats = STATS  # EpisodeDataset carries .stats fitted on its episodes
    res = train(_cfg(tmp_path, "s", steps=2), data, language=language)
    assert load_checkpoint(res.artifact).stats["actions"].std.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.5])


def test_language_adapter_training_keeps_bert_frozen(tmp_path, backbone_dir, language):
    from vla_adapter_ros.core.adapters import delete_adapter

    bert = {k: v.clone() for k, v in language.model.state_dict().items()}
    cfg = _cfg(tmp_path, "lang", regime="adapter", init_checkpoint=str(backbone_dir), steps=2, adapter_name="lang",
               adapter=AdapterConfig(rank=4, components=("language", "fusion"), init="small_random"))
    res = train(cfg, TinyEpisodes(cfg.model, n=8), language=language)
    try:
        saved = load_file(str(res.artifact / "adapter_model.safetensors"))
        assert any(k.startswith("language.model.encoder.layer.5.output.dense.") for k in saved)
        assert any(k.startswith("fusion.blocks.0.mlp.proj.") for k in saved)
        report = json.loads((tmp_path / "lang" / "parameter_report.json").read_text())
        rows = {r["name"]: r for r in report["rows"]}
        assert rows["language"]["trainable"] == 0 and rows["lang"]["trainable"] == rows["total"]["trainable"]
    finally:
        delete_adapter(res.model, "lang")
        res.model.language = None
    assert tensors_equal(language.model.state_dict(), bert)
