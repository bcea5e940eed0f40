"""The Meta-World adapter benchmark, end to end and resumable (`vla-adapter benchmark`).

Stages, each skipped when its result is already on disk (so an interrupted run
continues where it stopped, and ``--stage`` reruns one):

1. ``record``   expert demonstrations as rosbag2 episodes (base + held-out tasks, seeds 0..)
2. ``pretrain`` the backbone on the base tasks
3. ``finetune`` every method on every held-out task, same data and schedule
4. ``cost``     each method's training cost: peak memory and time per step of a short run in a fresh process
5. ``eval``     closed-loop success on held-out seeds (>= EVAL_SEED_START), backbone-only (also on every base
                task: the success-per-difficulty-group table), paraphrased instructions, forgetting
6. ``export``   backbone + the main method's adapters -> ONNX model directory (parity-checked)
7. ``report``   results.json + markdown tables + PNG plots

The backbone never sees the held-out tasks; methods differ only in what they train.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..contract import RobotContract
from .benchmark_report import write_report
from .config import (
    TUNER_REGIMES,
    AdapterConfig,
    ConfigBase,
    LoraConfig,
    ModelConfig,
    PrefixConfig,
    TrainConfig,
)
from .evaluate import EpisodeResult, TorchPolicySource, evaluate_task, summarize
from .export import export_model
from .record import record
from .sim.instructions import training_instructions
from .sim.metaworld_env import canonical_task
from .train import train_from_config

STAGES = ("record", "pretrain", "finetune", "cost", "eval", "export", "report")
FINETUNE_REGIMES = (*TUNER_REGIMES, "head_only", "full")
DONE = ".done"


@dataclass
class MethodSpec(ConfigBase):
    """One way of specialising the backbone to a task: a fine-tuning regime and, for ``adapter`` /
    ``lora`` / ``prefix``, the AdapterConfig / LoraConfig / PrefixConfig fields it trains with (``task``
    and ``instruction_examples`` are filled in per task). Unset fields take the config class's defaults.
    """

    name: str = "adapter_r16"
    regime: str = "adapter"  # adapter | lora | prefix | head_only | full
    adapter: dict[str, Any] = field(default_factory=dict)  # AdapterConfig fields (regime adapter)
    lora: dict[str, Any] = field(default_factory=dict)  # LoraConfig fields (regime lora)
    prefix: dict[str, Any] = field(default_factory=dict)  # PrefixConfig fields (regime prefix)
    seed: int = 0  # training seed (TrainConfig.seed)
    # This method again with another training seed: the name of the method it repeats (same regime and
    # fields). Reported in the training-seed table, not as a method of its own.
    seed_of: str = ""

    _MOVED: ClassVar[tuple[str, ...]] = ("rank", "positions", "lora_targets", "train_modules")
    _PER_TASK: ClassVar[tuple[str, ...]] = ("task", "instruction_examples")

    def __post_init__(self) -> None:
        if self.regime not in FINETUNE_REGIMES:
            raise ValueError(f"method {self.name!r}: regime must be {'|'.join(FINETUNE_REGIMES)}, got {self.regime!r}")
        for section, cls in (("adapter", AdapterConfig), ("lora", LoraConfig), ("prefix", PrefixConfig)):
            fields = getattr(self, section)
            if fields and self.regime != section:
                raise ValueError(f"method {self.name!r}: an {section!r} section is for regime {section}, "
                                 f"this method's regime is {self.regime!r}")
            per_task = sorted(set(fields) & set(self._PER_TASK))
            if per_task:
                raise ValueError(f"method {self.name!r}: {section}.{per_task[0]} is set per task by the benchmark")
            try:
                cls.from_dict(fields)
            except ValueError as exc:
                raise ValueError(f"method {self.name!r}: {section}: {exc}") from exc

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MethodSpec:
        moved = [k for k in cls._MOVED if k in d]
        if moved:
            raise ValueError(f"method {d.get('name')!r}: {moved} are AdapterConfig / LoraConfig fields; put them in "
                             "the method's 'adapter' or 'lora' section, e.g. {regime: lora, lora: {rank: 8, alpha: 16}}")
        return super().from_dict(d)

    def tuner_fields(self, task: str, instructions: tuple[str, ...]) -> dict[str, Any]:
        """The TrainConfig fragment for ``task``: ``{"adapter": {...}}`` / ``{"lora": {...}}`` / ``{"prefix": ...}``, or {}."""
        if self.regime not in TUNER_REGIMES:
            return {}
        fields = getattr(self, self.regime)
        return {self.regime: {**fields, "task": f"metaworld/{task}", "instruction_examples": list(instructions)}}


@dataclass
class BenchmarkConfig(ConfigBase):
    # -- tasks and data ------------------------------------------------------------------------------
    base_tasks: tuple[str, ...] = (
        "reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close",
        "button-press-topdown", "peg-insert-side", "window-open", "window-close",
    )
    heldout_tasks: tuple[str, ...] = ("coffee-button", "faucet-open", "handle-press", "plate-slide", "basketball")
    base_episodes: int = 40
    heldout_episodes: int = 40
    record_seed: int = 0
    max_steps: int = 0  # 0 = the task's limit (500)
    # A robot contract (e.g. config/robots/metaworld_sawyer.yaml: two cameras): recorded, trained and exported
    # with its cameras, state and actions. "" = one corner camera, the layout of every earlier benchmark.
    contract: str = ""
    # -- model and schedules ---------------------------------------------------------------------------
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    pretrain_steps: int = 3000
    finetune_steps: int = 600
    batch_size: int = 32
    augment: bool = True
    # every run (pre-training and fine-tuning) warms up linearly over a share of its steps, and writes
    # resume checkpoints (TrainConfig.warmup_steps / save_every, see schedule())
    warmup_fraction: float = 0.1  # warm-up over this share of a run's steps (at least one step) ...
    max_warmup_steps: int = 100  # ... and at most this many
    save_fraction: float = 0.1  # a resume checkpoint every this share of a run's steps ...
    min_save_every: int = 50  # ... and at least this many steps apart
    methods: tuple[dict[str, Any], ...] = (
        {"name": "adapter_r8", "regime": "adapter", "adapter": {"rank": 8}},
        {"name": "adapter_r16", "regime": "adapter", "adapter": {"rank": 16}},
        {"name": "adapter_r32", "regime": "adapter", "adapter": {"rank": 32}},
        {"name": "adapter_r16_ffn", "regime": "adapter", "adapter": {"rank": 16, "positions": ["ffn"]}},
        {"name": "lora_r8", "regime": "lora", "lora": {"rank": 8, "alpha": 16.0, "targets": ["attn_out", "ffn_out"]}},
        {"name": "head_only", "regime": "head_only"},
        {"name": "full", "regime": "full"},
    )
    main_method: str = "adapter_r16"
    # -- evaluation -----------------------------------------------------------------------------------
    eval_episodes: int = 10
    eval_seed_start: int = 100_000
    forgetting_episodes: int = 5  # per base task, backbone vs one fully fine-tuned model
    # the backbone alone on every base task (the success-per-difficulty-group table); 0 = forgetting_episodes.
    # The forgetting table compares the first forgetting_episodes of them with the fully fine-tuned model.
    base_eval_episodes: int = 0
    cost_steps: int = 40  # training steps of each method's cost measurement (0 = no cost stage)
    eval_workers: int = 1  # processes for the eval stage (each runs torch with one thread)
    # -- export ---------------------------------------------------------------------------------------
    export_dir: str = "models/default"
    export_tasks: tuple[str, ...] = ()  # held-out tasks whose main-method adapter is bundled; () = all
    quantize_language: bool = True
    out_dir: str = "runs/metaworld"

    def __post_init__(self) -> None:
        for name in ("base_tasks", "heldout_tasks", "methods", "export_tasks"):
            setattr(self, name, tuple(getattr(self, name)))
        specs = [MethodSpec.from_dict(dict(m)) for m in self.methods]
        if self.main_method not in {m.name for m in specs}:
            raise ValueError(f"main_method {self.main_method!r} is not among methods {[m.name for m in specs]}")
        if set(self.base_tasks) & set(self.heldout_tasks):
            raise ValueError(f"tasks both base and held-out: {sorted(set(self.base_tasks) & set(self.heldout_tasks))}")
        for n in ("base_episodes", "heldout_episodes", "pretrain_steps", "finetune_steps", "eval_episodes",
                  "eval_workers", "max_warmup_steps", "min_save_every"):
            if getattr(self, n) <= 0:
                raise ValueError(f"{n} must be positive, got {getattr(self, n)}")
        for n in ("base_eval_episodes", "cost_steps"):
            if getattr(self, n) < 0:
                raise ValueError(f"{n} must be >= 0, got {getattr(self, n)}")
        by_name = {m.name: m for m in specs}
        if len(by_name) != len(specs):
            raise ValueError(f"method names must be unique, got {[m.name for m in specs]}")
        for m in specs:
            if not m.seed_of:
                continue
            first = by_name.get(m.seed_of)
            if first is None or first.seed_of:
                raise ValueError(f"method {m.name!r}: seed_of {m.seed_of!r} must name a method that is not a repeat")
            if (m.regime, m.adapter, m.lora, m.prefix) != (first.regime, first.adapter, first.lora, first.prefix):
                raise ValueError(f"method {m.name!r} repeats {first.name!r} with another seed but trains something "
                                 "else; only the seed may differ")
            if m.seed == first.seed:
                raise ValueError(f"method {m.name!r} repeats {first.name!r} with the same seed {m.seed}")
        for n in ("warmup_fraction", "save_fraction"):
            if not 0.0 <= getattr(self, n) <= 1.0:
                raise ValueError(f"{n} must be in [0, 1], got {getattr(self, n)}")
        ModelConfig.from_dict(self.model)  # validate overrides now, not after an hour of recording

    def schedule(self, steps: int) -> dict[str, int]:
        """TrainConfig.warmup_steps and save_every of a run of ``steps`` steps."""
        return {
            "warmup_steps": max(1, min(self.max_warmup_steps, int(steps * self.warmup_fraction))),
            "save_every": max(self.min_save_every, int(steps * self.save_fraction)),
        }

    @property
    def method_specs(self) -> list[MethodSpec]:
        return [MethodSpec.from_dict(dict(m)) for m in self.methods]

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: ``label`` (method) on ``task`` with ``split`` instructions, and its model."""

    task: str
    label: str
    split: str
    checkpoint: str
    adapter: str | None


def _stored_episodes(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _eval_group_in_worker(cfg: dict[str, Any], group: list[EvalJob]) -> list[str]:
    """Process-pool entry: evaluate one group with one torch thread; returns its log lines."""
    torch.set_num_threads(1)
    lines: list[str] = []
    Benchmark(BenchmarkConfig.from_dict(cfg), progress=False, log=lines.append)._eval_group(group)
    return lines


def _measure_cost_in_worker(cfg: dict[str, Any], spec: dict[str, Any], task: str) -> dict[str, Any]:
    """Process-pool entry: a short training run of ``spec`` on ``task`` in a temporary directory, one
    torch thread; peak memory of its steps (TrainResult) and its step times (log, one record per step)."""
    torch.set_num_threads(1)
    bench = Benchmark(BenchmarkConfig.from_dict(cfg), progress=False, log=lambda _: None)
    method = MethodSpec.from_dict(spec)
    steps = bench.cfg.cost_steps
    with tempfile.TemporaryDirectory(prefix="vla-cost-") as tmp:
        train_cfg = bench.method_train_config(task, method, Path(tmp), steps)
        train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "resume": False, "save_every": 0, "log_every": 1,
                                           "plot": False, "progress": False})
        result = train_from_config(train_cfg)
        log = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines() if x.strip()]
    ms = [1e3 * bench.cfg.batch_size / r["samples_per_s"] for r in log if r.get("samples_per_s")]
    ms = ms[min(5, len(ms) // 2):]  # the first steps warm up allocator and caches
    return {"method": method.name, "task": task, "steps": steps, "batch_size": bench.cfg.batch_size,
            "trainable_params": result.trainable_params, "peak_rss_delta_bytes": result.peak_rss_delta_bytes,
            "ms_per_step_median": float(sorted(ms)[len(ms) // 2]) if ms else None,
            "ms_per_step": ms, "torch_threads": torch.get_num_threads()}


def adapter_name(task: str) -> str:
    """``faucet-open-v3`` -> ``faucet_open`` (the name users switch to)."""
    return task.removesuffix("-v3").replace("-", "_")


class Benchmark:
    """Paths and stages of one benchmark run under ``cfg.out_dir``."""

    def __init__(self, cfg: BenchmarkConfig, *, progress: bool = True, log=print) -> None:
        self.cfg, self.progress, self.log = cfg, progress, log
        self.out = Path(cfg.out_dir)
        self.base = [canonical_task(t) for t in cfg.base_tasks]
        self.heldout = [canonical_task(t) for t in cfg.heldout_tasks]

    # ------------------------------------------------------------------ paths
    def demos(self, task: str) -> Path:
        return self.out / "demos" / task

    @property
    def backbone(self) -> Path:
        return self.out / "pretrain" / "checkpoint"

    def run_dir(self, task: str, method: str) -> Path:
        return self.out / "finetune" / task / method

    def artifact(self, task: str, spec: MethodSpec) -> Path:
        run = self.run_dir(task, spec.name)
        if spec.regime in TUNER_REGIMES:
            return run / "adapters" / adapter_name(task)
        return run / "checkpoint"

    def eval_file(self, task: str, policy: str, split: str = "train") -> Path:
        return self.out / "eval" / task / f"{policy}{'' if split == 'train' else '_' + split}.json"

    # ------------------------------------------------------------------ stages
    def record(self) -> None:
        cfg = self.cfg
        for tasks, episodes in ((self.base, cfg.base_episodes), (self.heldout, cfg.heldout_episodes)):
            for task in tasks:
                done = self.demos(task) / DONE
                if done.is_file():
                    continue
                shutil.rmtree(self.demos(task), ignore_errors=True)  # a partial task is redone whole
                self.log(f"[record] {task}: {episodes} successful expert episodes")
                summaries = record([task], episodes, cfg.record_seed, self.out / "demos",
                                   image_size=self.cfg.model_config.image_size, only_success=True,
                                   max_steps=cfg.max_steps or None, progress=self.progress,
                                   contract=RobotContract.load(cfg.contract) if cfg.contract else None)
                got = sum(1 for s in summaries if s.success and s.path is not None)
                if got < episodes:
                    raise RuntimeError(f"{task}: the expert succeeded in only {got} of {len(summaries)} attempts "
                                       f"(wanted {episodes}); raise max_steps ({cfg.max_steps}) or pick another task")
                done.write_text(json.dumps({"episodes": episodes, "seed": cfg.record_seed}))

    def train_config(self, regime: str, data: list[Path], out: Path, steps: int, **extra: Any) -> TrainConfig:
        return TrainConfig.from_dict({
            "regime": regime, "data": [str(d) for d in data], "steps": steps, "batch_size": self.cfg.batch_size,
            **self.cfg.schedule(steps), "out_dir": str(out), "resume": True, "progress": self.progress,
            "augment": self.cfg.augment, "model": self.cfg.model_config.to_dict(),
            "init_checkpoint": "" if regime == "pretrain" else str(self.backbone),
            **({"contract": self.cfg.contract} if self.cfg.contract else {}),
            **extra,
        })

    def method_train_config(self, task: str, spec: MethodSpec, out: Path, steps: int) -> TrainConfig:
        """The TrainConfig ``spec`` fine-tunes with on ``task``."""
        tuner = spec.tuner_fields(task, tuple(training_instructions(task)))
        return self.train_config(spec.regime, [self.demos(task)], out, steps, adapter_name=adapter_name(task),
                                 seed=spec.seed, **tuner)

    def _train(self, regime: str, data: list[Path], out: Path, steps: int, **extra: Any) -> Path:
        return self._run_training(self.train_config(regime, data, out, steps, **extra))

    def _run_training(self, cfg: TrainConfig) -> Path:
        out = Path(cfg.out_dir)
        result = train_from_config(cfg)
        if result.artifact is None:
            raise RuntimeError(f"training in {out} stopped before it finished")
        art = Path(result.artifact)
        files = [p for p in art.rglob("*") if p.is_file()]
        (out / "result.json").write_text(json.dumps({
            "regime": cfg.regime, "steps": result.step, "final_loss": result.loss,
            "peak_rss_delta_bytes": result.peak_rss_delta_bytes,
            "trainable_params": result.trainable_params, "total_params": result.total_params,
            "artifact": str(art), "artifact_bytes": sum(p.stat().st_size for p in files),
        }, indent=1))
        return art

    def pretrain(self) -> None:
        if (self.backbone / "model.safetensors").is_file():
            return
        self.log(f"[pretrain] backbone on {len(self.base)} base tasks, {self.cfg.pretrain_steps} steps")
        self._train("pretrain", [self.demos(t) for t in self.base], self.out / "pretrain", self.cfg.pretrain_steps)

    def finetune(self) -> None:
        for spec in self.method_specs():  # main method first: the bundled model needs only it
            for task in self.heldout:
                if self.artifact(task, spec).is_dir():
                    continue
                self.log(f"[finetune] {task}: {spec.name}")
                self._run_training(self.method_train_config(task, spec, self.run_dir(task, spec.name),
                                                            self.cfg.finetune_steps))

    def cost_file(self, spec: MethodSpec) -> Path:
        return self.out / "cost" / f"{spec.name}.json"

    def cost(self) -> None:
        """Each method's training cost on the first held-out task: a ``cost_steps`` run in a fresh process
        (one torch thread), peak resident memory of its steps above what the loaded model and data hold,
        and the median step time. A fresh process each, so no method reuses memory another freed."""
        if not self.cfg.cost_steps:
            return
        task = self.heldout[0]
        for spec in self.method_specs():
            path = self.cost_file(spec)
            if spec.seed_of or path.is_file():
                continue
            self.log(f"[cost] {spec.name}: {self.cfg.cost_steps} steps on {task}")
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                cost = pool.submit(_measure_cost_in_worker, self.cfg.to_dict(), spec.to_dict(), task).result()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cost, indent=1))
            self.log(f"[cost] {spec.name}: peak +{cost['peak_rss_delta_bytes'] / 2**20:.0f} MiB, "
                     f"{cost['ms_per_step_median']:.0f} ms/step")

    def method_specs(self) -> list[MethodSpec]:
        """Configured methods, the main one first."""
        specs = self.cfg.method_specs
        return sorted(specs, key=lambda s: s.name != self.cfg.main_method)

    def eval_jobs(self) -> list[EvalJob]:
        """Every evaluation the report needs, main method first; each names the model it loads."""
        main = next(s for s in self.method_specs() if s.name == self.cfg.main_method)
        jobs: list[EvalJob] = []
        backbone = (str(self.backbone), None)
        for task in self.heldout:  # what the bundled model needs first, baselines after
            jobs.append(EvalJob(task, main.name, "train", *self._model_of(task, main)))
            jobs.append(EvalJob(task, main.name, "heldout", *self._model_of(task, main)))
            jobs.append(EvalJob(task, "backbone", "train", *backbone))
        for spec in self.method_specs()[1:]:
            for task in self.heldout:
                jobs.append(EvalJob(task, spec.name, "train", *self._model_of(task, spec)))
        full = next((s for s in self.method_specs() if s.regime == "full"), None)
        for task in self.base:
            jobs.append(EvalJob(task, "backbone", "train", *backbone))
            if full is not None:  # forgetting: the first held-out task's fully fine-tuned model on base tasks
                jobs.append(EvalJob(task, f"full[{self.heldout[0]}]", "train",
                                    *self._model_of(self.heldout[0], full)))
        return jobs

    def episodes_for(self, job: EvalJob) -> int:
        if job.task not in self.base:
            return self.cfg.eval_episodes
        if job.label == "backbone":
            return max(self.cfg.base_eval_episodes, self.cfg.forgetting_episodes)
        return self.cfg.forgetting_episodes

    def evaluate(self) -> None:
        """Run the evaluations that are missing or have fewer episodes than configured.

        A stored result with fewer episodes is extended with the next seeds (evaluation is
        deterministic per seed), so raising ``eval_episodes`` reuses what exists.
        ``eval_workers`` > 1 spreads the work over processes, one model per group of jobs.
        """
        todo = [j for j in self.eval_jobs()
                if _stored_episodes(self.eval_file(j.task, j.label, j.split)) < self.episodes_for(j)]
        groups: dict[tuple[str, str | None, str], list[EvalJob]] = {}
        for job in todo:  # one model in memory per group
            groups.setdefault((job.checkpoint, job.adapter, job.label), []).append(job)
        workers = min(self.cfg.eval_workers, len(groups))
        if workers <= 1:
            for group in groups.values():
                self._eval_group(group)
            return
        self.log(f"[eval] {len(todo)} evaluations in {len(groups)} groups on {workers} processes")
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_eval_group_in_worker, self.cfg.to_dict(), group) for group in groups.values()]
            for future in as_completed(futures):
                for line in future.result():
                    self.log(line)

    def _eval_group(self, group: list[EvalJob]) -> None:
        source = None
        for job in group:
            if source is None:
                source = TorchPolicySource(job.checkpoint, job.adapter, name=job.label)
            self._eval_one(job, source, self.episodes_for(job), self.eval_file(job.task, job.label, job.split))

    def _model_of(self, task: str, spec: MethodSpec) -> tuple[str, str | None]:
        """(checkpoint, adapter or None) that ``spec`` fine-tuned on ``task``."""
        art = self.artifact(task, spec)
        if spec.regime in TUNER_REGIMES:
            return str(self.backbone), str(art)
        return str(art), None

    def _eval_one(self, job: EvalJob, source: Any, episodes: int, path: Path) -> None:
        done: list[EpisodeResult] = []
        if path.is_file():  # extend: the first seeds are already evaluated
            done = [EpisodeResult(**r) for r in json.loads(path.read_text())["results"]][:episodes]
        self.log(f"[eval] {job.task}: {job.label} ({job.split} instructions, episodes {len(done) + 1}..{episodes})")
        k = source.model.config.n_action_steps or source.model.config.chunk_length
        new = evaluate_task(job.task, source, episodes=episodes - len(done),
                            seed_start=self.cfg.eval_seed_start + len(done), instruction_split=job.split,
                            n_action_steps=k, image_size=source.model.config.image_size,
                            max_steps=self.cfg.max_steps or None, progress=self.progress)
        res = summarize(job.task, job.label, job.split, done + new.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(res), indent=1))
        tmp.replace(path)
        self.log(f"[eval] {job.task}: {job.label}: {res.successes}/{res.episodes}")

    def export(self) -> None:
        out = Path(self.cfg.export_dir)
        if (out / "manifest.json").is_file():
            return
        main = next(s for s in self.method_specs() if s.name == self.cfg.main_method)
        tasks = [t for t in self.heldout if not self.cfg.export_tasks or t.removesuffix("-v3") in
                 [e.removesuffix("-v3") for e in self.cfg.export_tasks]]
        self.log(f"[export] {self.backbone} + {main.name} adapters of {tasks} -> {out}")
        export_model(self.backbone, [self.artifact(t, main) for t in tasks], out,
                     quantize_language=self.cfg.quantize_language, log=self.log)

    def report(self) -> Path:
        return write_report(self)

    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        for stage in stages:
            start = time.perf_counter()
            {"record": self.record, "pretrain": self.pretrain, "finetune": self.finetune, "cost": self.cost,
             "eval": self.evaluate, "export": self.export, "report": self.report}[stage]()
            self.log(f"[{stage}] done in {time.perf_counter() - start:.0f} s")


# --- CLI ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="BenchmarkConfig YAML/JSON (default: built-in)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (JSON value), e.g. --set pretrain_steps=100")
    parser.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    data: dict[str, Any] = {}
    if args.config:
        data = BenchmarkConfig.load(args.config).to_dict()
    for item in args.overrides:
        key, _, value = item.partition("=")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    cfg = BenchmarkConfig.from_dict(data)
    bench = Benchmark(cfg, progress=not args.no_progress)
    bench.out.mkdir(parents=True, exist_ok=True)
    cfg.save(bench.out / "benchmark_config.json")
    bench.run(tuple(args.stage) if args.stage else STAGES)
    return 0
