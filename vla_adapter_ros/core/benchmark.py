"""The Meta-World adapter benchmark, end to end and resumable (`vla-adapter benchmark`).

Stages, each skipped when its result is already on disk (so an interrupted run
continues where it stopped, and ``--stage`` reruns one):

1. ``record``   expert demonstrations as rosbag2 episodes (base + held-out tasks, seeds 0..)
2. ``pretrain`` the backbone on the base tasks
3. ``finetune`` every method on every held-out task, same data and schedule
4. ``eval``     closed-loop success on held-out seeds (>= EVAL_SEED_START), backbone-only,
                paraphrased instructions, forgetting on the base tasks
5. ``export``   backbone + the main method's adapters -> ONNX model directory (parity-checked)
6. ``report``   results.json + markdown tables + PNG plots

The backbone never sees the held-out tasks; methods differ only in what they train.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..contract import RobotContract
from .benchmark_report import write_report
from .config import AdapterConfig, ConfigBase, LoraConfig, ModelConfig, TrainConfig
from .evaluate import EpisodeResult, TorchPolicySource, evaluate_task, summarize
from .export import export_model
from .record import record
from .sim.instructions import training_instructions
from .sim.metaworld_env import canonical_task
from .train import train_from_config

STAGES = ("record", "pretrain", "finetune", "eval", "export", "report")
FINETUNE_REGIMES = ("adapter", "lora", "head_only", "full")
DONE = ".done"


@dataclass
class MethodSpec(ConfigBase):
    """One way of specialising the backbone to a task: a fine-tuning regime and, for ``adapter`` /
    ``lora``, the AdapterConfig / LoraConfig fields it trains with (``task`` and
    ``instruction_examples`` are filled in per task). Unset fields take the config class's defaults.
    """

    name: str = "adapter_r16"
    regime: str = "adapter"  # adapter | lora | head_only | full
    adapter: dict[str, Any] = field(default_factory=dict)  # AdapterConfig fields (regime adapter)
    lora: dict[str, Any] = field(default_factory=dict)  # LoraConfig fields (regime lora)

    _MOVED: ClassVar[tuple[str, ...]] = ("rank", "positions", "lora_targets", "train_modules")
    _PER_TASK: ClassVar[tuple[str, ...]] = ("task", "instruction_examples")

    def __post_init__(self) -> None:
        if self.regime not in FINETUNE_REGIMES:
            raise ValueError(f"method {self.name!r}: regime must be {'|'.join(FINETUNE_REGIMES)}, got {self.regime!r}")
        for section, cls in (("adapter", AdapterConfig), ("lora", LoraConfig)):
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
        """The TrainConfig fragment for ``task``: ``{"adapter": {...}}`` / ``{"lora": {...}}``, or {}."""
        if self.regime not in ("adapter", "lora"):
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
        if spec.regime in ("adapter", "lora"):
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

    def _train(self, regime: str, data: list[Path], out: Path, steps: int, **extra: Any) -> Path:
        cfg = TrainConfig.from_dict({
            "regime": regime, "data": [str(d) for d in data], "steps": steps, "batch_size": self.cfg.batch_size,
            **self.cfg.schedule(steps), "out_dir": str(out), "resume": True, "progress": self.progress,
            "augment": self.cfg.augment, "model": self.cfg.model_config.to_dict(),
            "init_checkpoint": "" if regime == "pretrain" else str(self.backbone),
            **({"contract": self.cfg.contract} if self.cfg.contract else {}),
            **extra,
        })
        result = train_from_config(cfg)
        if result.artifact is None:
            raise RuntimeError(f"training in {out} stopped before it finished")
        art = Path(result.artifact)
        files = [p for p in art.rglob("*") if p.is_file()]
        (out / "result.json").write_text(json.dumps({
            "regime": regime, "steps": result.step, "final_loss": result.loss,
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
                tuner = spec.tuner_fields(task, tuple(training_instructions(task)))
                self._train(spec.regime, [self.demos(task)], self.run_dir(task, spec.name),
                            self.cfg.finetune_steps, adapter_name=adapter_name(task), **tuner)

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
        return self.cfg.forgetting_episodes if job.task in self.base else self.cfg.eval_episodes

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
        if spec.regime in ("adapter", "lora"):
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
            {"record": self.record, "pretrain": self.pretrain, "finetune": self.finetune, "eval": self.evaluate,
             "export": self.export, "report": self.report}[stage]()
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
