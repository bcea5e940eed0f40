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
    from vla_adapter_ros.core.benchmark_report import _ratio_interval, _ratio_interval_runs

    def res(successes):
        return {"results": [{"seed": i, "success": bool(x)} for i, x in enumerate(successes)]}

    full = {"a": res([1, 1, 1, 1, 0, 0, 1, 1]), "b": res([1, 0, 1, 0, 1, 0, 1, 0])}
    assert _ratio_interval(full, full) == (1.0, 1.0)  # paired: identical episodes give exactly 100%
    lo, hi = _ratio_interval({"a": res([1, 1, 0, 1, 0, 0, 1, 1]), "b": res([0] * 8)}, full)
    assert 0.0 < lo < 0.5 < hi < 1.0
    assert _ratio_interval({"a": res([1] * 8), "b": None}, full) is None
    # several training runs: run i pairs with run i; identical runs give exactly 100% again
    other = {"a": res([1, 0, 1, 1, 0, 1, 1, 1]), "b": res([1, 1, 1, 0, 1, 0, 0, 0])}
    assert _ratio_interval_runs([full, other], [full, other]) == (1.0, 1.0)
    lo, hi = _ratio_interval_runs([full, {"a": res([0] * 8), "b": res([0] * 8)}], [full, other])
    assert 0.25 < lo < 0.5 < hi < 0.75  # point estimate (0.75 + 0.5 + 0 + 0) / (0.75 + 0.5 + 0.75 + 0.5) = 0.5
    assert _ratio_interval_runs([full], [full, other]) is None


def test_seed_repeats_must_repeat_a_method_with_another_seed_only():
    adapter = {"name": "a", "regime": "adapter", "adapter": {"rank": 8}}
    ok = BenchmarkConfig(methods=(adapter, {**adapter, "name": "a_s1", "seed": 1, "seed_of": "a"}), main_method="a")
    assert [m.seed for m in ok.method_specs] == [0, 1]
    with pytest.raises(ValueError, match="trains something else; only the seed may differ"):
        BenchmarkConfig(methods=(adapter, {**adapter, "name": "b", "seed": 1, "seed_of": "a", "adapter": {"rank": 4}}),
                        main_method="a")
    with pytest.raises(ValueError, match="repeats 'a' with the same seed 0"):
        BenchmarkConfig(methods=(adapter, {**adapter, "name": "b", "seed_of": "a"}), main_method="a")
    with pytest.raises(ValueError, match="seed_of 'x' must name a method"):
        BenchmarkConfig(methods=(adapter, {**adapter, "name": "b", "seed": 2, "seed_of": "x"}), main_method="a")


def test_backbone_success_per_difficulty_group_uses_every_meta_world_task_once():
    from vla_adapter_ros.core.benchmark_report import _groups
    from vla_adapter_ros.core.sim.difficulty import DIFFICULTY, GROUPS, difficulty

    every = [t for g in GROUPS for t in DIFFICULTY[g]]
    assert len(every) == len(set(every)) == 50 and [len(DIFFICULTY[g]) for g in GROUPS] == [28, 11, 6, 5]
    assert difficulty("metaworld/basketball") == "medium" and difficulty("stick-pull-v3") == "very_hard"
    mt45 = BenchmarkConfig.load(ROOT / "config" / "benchmark" / "mt45.yaml")
    assert sorted(f"{t}-v3" for t in (*mt45.base_tasks, *mt45.heldout_tasks)) == sorted(every)

    def res(k, n):
        return {"successes": k, "episodes": n, "success_rate": k / n}

    base = {"reach-v3": res(10, 10), "door-open-v3": res(5, 10), "push-v3": res(2, 10), "sweep-v3": res(0, 10),
            "shelf-place-v3": res(1, 10), "soccer-v3": None}
    g = _groups(base)
    rows = g["groups"]
    assert (rows["easy"]["successes"], rows["easy"]["episodes"]) == (15, 20)
    assert rows["medium"]["success_rate"] == 0.0 and rows["medium"]["tasks"] == ["sweep-v3"]
    assert g["average_of_groups"] == pytest.approx((0.75 + 0.0 + 0.2 + 0.1) / 4)
    assert g["mean_over_tasks"] == pytest.approx((1 + 0.5 + 0.2 + 0 + 0.1) / 5) and g["tasks"] == 5


@pytest.mark.slow
@pytest.mark.timeout(900)  # the whole pipeline with spawned cost and eval processes: ~3 min alone, more under load
def test_quick_benchmark_end_to_end_and_resume(tmp_path):
    cfg = BenchmarkConfig.load(ROOT / "config" / "benchmark" / "quick.yaml")
    data = cfg.to_dict()
    data.update(out_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "model"),
                methods=[{"name": "adapter_r8", "regime": "adapter",
                          "adapter": {"rank": 8, "train_modules": ["patch_embed", "norms"]}},
                         {"name": "adapter_r8_s1", "regime": "adapter", "seed": 1, "seed_of": "adapter_r8",
                          "adapter": {"rank": 8, "train_modules": ["patch_embed", "norms"]}},
                         {"name": "prefix_4", "regime": "prefix", "prefix": {"n_tokens": 4}},
                         {"name": "full", "regime": "full"}],
                heldout_tasks=["coffee-button"], base_eval_episodes=2, cost_steps=3)
    bench = Benchmark(BenchmarkConfig.from_dict(data), progress=False, log=lambda _: None)
    bench.run()
    out = tmp_path / "run"
    assert (out / "pretrain" / "checkpoint" / "model.safetensors").is_file()
    adapter = out / "finetune" / "coffee-button-v3" / "adapter_r8" / "adapters" / "coffee_button"
    assert json.loads((adapter / "adapter_config.json").read_text())["train_modules"] == ["patch_embed", "norms"]
    res = json.loads((out / "eval" / "coffee-button-v3" / "adapter_r8.json").read_text())
    assert res["episodes"] == 1 and res["instruction_split"] == "train"
    seed1 = out / "finetune" / "coffee-button-v3" / "adapter_r8_s1"
    assert json.loads((seed1 / "train_config.json").read_text())["seed"] == 1
    assert (out / "eval" / "coffee-button-v3" / "adapter_r8_s1.json").is_file()
    prefix = out / "finetune" / "coffee-button-v3" / "prefix_4" / "adapters" / "coffee_button"
    assert json.loads((prefix / "adapter_config.json").read_text())["method"] == "prefix"
    assert json.loads((out / "eval" / "coffee-button-v3" / "prefix_4.json").read_text())["episodes"] == 1
    # the backbone ran base_eval_episodes on every base task; forgetting compares the first seeds only
    assert json.loads((out / "eval" / "reach-v3" / "backbone.json").read_text())["episodes"] == 2
    assert json.loads((out / "eval" / "reach-v3" / "full[coffee-button-v3].json").read_text())["episodes"] == 1
    results = json.loads((out / "report" / "results.json").read_text())
    assert results["forgetting"]["reach-v3"]["backbone"]["episodes"] == 1
    assert results["groups"]["groups"]["easy"]["episodes"] == 2 and results["groups"]["tasks"] == 2
    assert set(results["methods"]) == {"backbone", "adapter_r8", "prefix_4", "full"}  # the repeat: seeds table
    assert [r["seed"] for r in results["seeds"]["methods"]["adapter_r8"]["runs"]] == [0, 1]
    for name in ("adapter_r8", "prefix_4", "full"):  # training cost measured in a fresh process per method
        cost = json.loads((out / "cost" / f"{name}.json").read_text())
        assert cost["steps"] == 3 and cost["peak_rss_delta_bytes"] > 0 and cost["ms_per_step_median"] > 0
    assert not (out / "cost" / "adapter_r8_s1.json").exists()
    assert results["deactivated_identity"] == {"adapter_r8": [1, 1], "adapter_r8_s1": [1, 1], "prefix_4": [1, 1]}
    assert (out / "eval" / "coffee-button-v3" / "adapter_r8_heldout.json").is_file()
    assert (out / "eval" / "reach-v3" / "full[coffee-button-v3].json").is_file()
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert [a["name"] for a in manifest["adapters"]] == ["coffee_button"]
    report = (out / "report" / "RESULTS.md").read_text()
    assert "adapter_r8" in report and "Forgetting" in report and "vs full [95% CI]" in report
    for section in ("## Training cost per method", "## Training seeds", "per Meta-World difficulty group",
                    "| SmolVLA (0.45B) (MT50, published) | 82.5 | 41.8 | 45.0 | 60.0 | 57.3 |"):
        assert section in report
    assert (out / "report" / "success_per_task.png").stat().st_size > 1000
    assert (out / "report" / "success_per_group.png").stat().st_size > 1000
    # Resumable: a second run finds every stage done and changes nothing.
    mtime = adapter.joinpath("adapter_model.safetensors").stat().st_mtime_ns
    bench.run(("record", "pretrain", "finetune", "cost", "eval", "export"))
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
