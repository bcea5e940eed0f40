"""The benchmark pipeline end to end in quick mode, and its resumability.

Real Meta-World episodes, real training, real closed-loop evaluation and a real
ONNX export, on a tiny model and a handful of short episodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_adapter_ros.core.benchmark import Benchmark, BenchmarkConfig
from vla_adapter_ros.core.evaluate import wilson_interval

ROOT = Path(__file__).resolve().parents[2]


def test_wilson_interval():
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.31
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_config_validation_quotes_the_problem():
    with pytest.raises(ValueError, match="main_method 'nope'"):
        BenchmarkConfig(main_method="nope")
    with pytest.raises(ValueError, match="both base and held-out"):
        BenchmarkConfig(base_tasks=("reach",), heldout_tasks=("reach",))
    with pytest.raises(ValueError, match="regime must be"):
        BenchmarkConfig(methods=({"name": "x", "regime": "magic"},), main_method="x")
    with pytest.raises(ValueError, match="method 'x': an 'adapter' section is for regime adapter"):
        BenchmarkConfig(methods=({"name": "x", "regime": "full", "adapter": {"train_modules": ["norms"]}},),
                        main_method="x")
    with pytest.raises(ValueError, match="method 'x': lora: rank must be a positive int, got 0"):
        BenchmarkConfig(methods=({"name": "x", "regime": "lora", "lora": {"rank": 0}},), main_method="x")
    with pytest.raises(ValueError, match=r"\['rank'\] are AdapterConfig / LoraConfig fields; put them in"):
        BenchmarkConfig(methods=({"name": "x", "regime": "adapter", "rank": 8},), main_method="x")
    with pytest.raises(ValueError, match="adapter.task is set per task"):
        BenchmarkConfig(methods=({"name": "x", "regime": "adapter", "adapter": {"task": "t"}},), main_method="x")


@pytest.mark.parametrize("name", ["metaworld", "metaworld_stem", "quick"])
def test_bundled_benchmark_configs_load(name):
    cfg = BenchmarkConfig.load(ROOT / "config" / "benchmark" / f"{name}.yaml")
    assert cfg.main_method in {m.name for m in cfg.method_specs}


def test_methods_give_their_tuner_config_and_the_schedule_scales_with_the_run():
    cfg = BenchmarkConfig.load(ROOT / "config" / "benchmark" / "metaworld.yaml")
    lora = next(m for m in cfg.method_specs if m.name == "lora_r16")
    fragment = lora.tuner_fields("faucet-open-v3", ("open the faucet",))
    assert fragment == {"lora": {"rank": 16, "alpha": 32.0, "targets": ["attn_out", "ffn_out"],
                                 "task": "metaworld/faucet-open-v3", "instruction_examples": ["open the faucet"]}}
    assert next(m for m in cfg.method_specs if m.name == "full").tuner_fields("faucet-open-v3", ()) == {}
    # warm-up: a tenth of the run, 1..100 steps; resume checkpoints: every tenth, at least 50 steps apart
    assert cfg.schedule(8000) == {"warmup_steps": 100, "save_every": 800}
    assert cfg.schedule(1000) == {"warmup_steps": 100, "save_every": 100}
    assert cfg.schedule(6) == {"warmup_steps": 1, "save_every": 50}


def test_ratio_to_full_fine_tuning_interval_pairs_the_seeds():
    from vla_adapter_ros.core.benchmark_report import _ratio_interval

    def res(successes):
        return {"results": [{"seed": i, "success": bool(x)} for i, x in enumerate(successes)]}

    full = {"a": res([1, 1, 1, 1, 0, 0, 1, 1]), "b": res([1, 0, 1, 0, 1, 0, 1, 0])}
    assert _ratio_interval(full, full) == (1.0, 1.0)  # paired: identical episodes give exactly 100%
    lo, hi = _ratio_interval({"a": res([1, 1, 0, 1, 0, 0, 1, 1]), "b": res([0] * 8)}, full)
    assert 0.0 < lo < 0.5 < hi < 1.0
    assert _ratio_interval({"a": res([1] * 8), "b": None}, full) is None


@pytest.mark.slow
def test_quick_benchmark_end_to_end_and_resume(tmp_path):
    cfg = BenchmarkConfig.load(ROOT / "config" / "benchmark" / "quick.yaml")
    data = cfg.to_dict()
    data.update(out_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "model"),
                methods=[{"name": "adapter_r8", "regime": "adapter",
                          "adapter": {"rank": 8, "train_modules": ["patch_embed", "norms"]}},
                         {"name": "full", "regime": "full"}],
                heldout_tasks=["coffee-button"])
    bench = Benchmark(BenchmarkConfig.from_dict(data), progress=False, log=lambda _: None)
    bench.run()
    out = tmp_path / "run"
    assert (out / "pretrain" / "checkpoint" / "model.safetensors").is_file()
    adapter = out / "finetune" / "coffee-button-v3" / "adapter_r8" / "adapters" / "coffee_button"
    assert json.loads((adapter / "adapter_config.json").read_text())["train_modules"] == ["patch_embed", "norms"]
    res = json.loads((out / "eval" / "coffee-button-v3" / "adapter_r8.json").read_text())
    assert res["episodes"] == 1 and res["instruction_split"] == "train"
    assert (out / "eval" / "coffee-button-v3" / "adapter_r8_heldout.json").is_file()
    assert (out / "eval" / "reach-v3" / "full[coffee-button-v3].json").is_file()
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert [a["name"] for a in manifest["adapters"]] == ["coffee_button"]
    report = (out / "report" / "RESULTS.md").read_text()
    assert "adapter_r8" in report and "Forgetting" in report and "vs full [95% CI]" in report
    assert (out / "report" / "success_per_task.png").stat().st_size > 1000
    # Resumable: a second run finds every stage done and changes nothing.
    mtime = adapter.joinpath("adapter_model.safetensors").stat().st_mtime_ns
    bench.run(("record", "pretrain", "finetune", "eval", "export"))
    assert adapter.joinpath("adapter_model.safetensors").stat().st_mtime_ns == mtime
    # More episodes later: the stored ones are kept, only the next seeds run (here on 2 worker processes).
    res_path = out / "eval" / "coffee-button-v3" / "adapter_r8.json"
    first = json.loads(res_path.read_text())["results"]
    log: list[str] = []
    more = {**data, "eval_episodes": 2, "eval_workers": 2}
    Benchmark(BenchmarkConfig.from_dict(more), progress=False, log=log.append).run(("eval",))
    assert any("on 2 processes" in line for line in log)
    extended = json.loads(res_path.read_text())
    assert extended["episodes"] == 2 and extended["results"][0] == first[0]
    assert extended["results"][1]["seed"] == first[0]["seed"] + 1
    # ... and equal (success, steps) to both episodes evaluated from scratch in this process
    res_path.unlink()
    Benchmark(BenchmarkConfig.from_dict({**more, "eval_workers": 1}), progress=False, log=lambda _: None).run(("eval",))
    scratch = json.loads(res_path.read_text())["results"]
    assert [(r["seed"], r["success"], r["steps"]) for r in scratch] == \
        [(r["seed"], r["success"], r["steps"]) for r in extended["results"]]
