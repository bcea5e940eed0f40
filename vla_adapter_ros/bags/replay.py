"""Replay support without ROS: what to publish from a bag, and how to judge what came back.

``vla-adapter replay`` (:mod:`vla_adapter_ros.ros.replay`) feeds a bag's frames to a running
policy node and records the node's ActionChunks. This module holds everything that needs no
ROS graph: loading the frames (:func:`vla_adapter_ros.bags.episodes.read_episode`, so missing
topics and wrong types raise :class:`MissingTopicError` / :class:`TopicTypeError` naming the
bag), reading ActionChunks back by header stamp, per-episode error metrics against the bag's
recorded actions, the golden comparison, the summary table and the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.errors import BadMessageError, MissingTopicError, TopicTypeError
from vla_adapter_ros.bags.layout import DEFAULT_TOPICS, EpisodeTopics
from vla_adapter_ros.bags.reader import header_stamp_ns, open_reader
from vla_adapter_ros.decoding import DecodeError, action_chunk_to_array


def read_action_chunks(path: str | Path, topic: str = DEFAULT_TOPICS.action,
                       typestore: Any = None) -> dict[int, np.ndarray]:
    """header stamp (ns) -> (K, A) float32 chunk, for every ActionChunk on ``topic``."""
    path = Path(path)
    store = typestore if typestore is not None else ts.make_typestore()
    reader: Reader = open_reader(path)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise MissingTopicError(path, f"no topic {topic!r}; the bag has {have}")
        bad = [c.msgtype for c in conns if c.msgtype != ts.ACTION_CHUNK]
        if bad:
            raise TopicTypeError(path, f"topic {topic!r} has type {bad[0]}, expected {ts.ACTION_CHUNK}")
        out: dict[int, np.ndarray] = {}
        for conn, log_ns, raw in reader.messages(connections=conns):
            m = store.deserialize_cdr(raw, conn.msgtype)
            try:
                chunk = action_chunk_to_array(m)
            except DecodeError as exc:
                raise BadMessageError(path, f"ActionChunk on {topic!r}: {exc}") from exc
            out.setdefault(header_stamp_ns(m, log_ns), chunk)
        return out
    finally:
        reader.close()


@dataclass
class ActionErrors:
    """First action of each answered chunk vs the action recorded in the bag (e.g. the expert's)."""

    frames: int
    answered: int
    mae: float
    rmse: float
    max_abs: float
    per_dim_mae: list[float]


def action_errors(answers: dict[int, np.ndarray], stamps: np.ndarray, recorded: np.ndarray) -> ActionErrors:
    """``answers`` stamp -> (K, A); ``stamps`` (T,) and ``recorded`` (T, A) from the source episode."""
    rows = [(answers[int(s)][0], recorded[i]) for i, s in enumerate(stamps) if int(s) in answers]
    if not rows:
        nan = float("nan")
        return ActionErrors(len(stamps), 0, nan, nan, nan, [nan] * recorded.shape[1])
    got, want = (np.stack(x) for x in zip(*rows, strict=True))
    if got.shape != want.shape:
        raise ValueError(f"answered actions {got.shape[1:]} and recorded actions {want.shape[1:]} differ in size")
    diff = np.abs(got.astype(np.float64) - want)
    return ActionErrors(len(stamps), len(rows), float(diff.mean()), float(np.sqrt((diff ** 2).mean())),
                        float(diff.max()), [float(v) for v in diff.mean(axis=0)])


@dataclass
class GoldenResult:
    """This run's chunks vs a previous (golden) run's, frame by frame (matched by stamp)."""

    compared: int
    missing: int  # frames the golden run answered and this run did not
    extra: int  # frames this run answered and the golden run did not
    max_abs_diff: float
    tolerance: float
    passed: bool
    per_frame_max: list[float] = field(default_factory=list)


def compare_golden(answers: dict[int, np.ndarray], golden: dict[int, np.ndarray], tolerance: float,
                   same_frames: bool = True) -> GoldenResult:
    """Frame-by-frame comparison; ``same_frames``: both runs must have answered the same frames
    (lockstep); False compares the frames both answered (timed replay skips frames by load)."""
    common = sorted(set(answers) & set(golden))
    per_frame = []
    for s in common:
        a, g = answers[s], golden[s]
        per_frame.append(float(np.abs(a.astype(np.float64) - g).max()) if a.shape == g.shape else float("inf"))
    worst = max(per_frame, default=0.0)
    missing, extra = len(set(golden) - set(answers)), len(set(answers) - set(golden))
    passed = bool(common) and worst <= tolerance and (not same_frames or missing == extra == 0)
    return GoldenResult(len(common), missing, extra, worst, tolerance, passed, per_frame)


@dataclass
class EpisodeReport:
    """One replayed episode. ``mode`` decides what counts as a regression:

    - lockstep: every frame must be answered (re-sent until it is), and match the golden run;
    - timed: frames skipped by a busy node are a count, not a regression; a regression is a golden
      mismatch on the frames both runs answered, answers out of order, or fewer answered frames
      than ``min_answered`` (a fraction) when one is asked for.
    """

    name: str
    task: str
    frames: int
    answered: int
    errors: ActionErrors
    golden: GoldenResult | None = None
    latency_ms_p50: float = float("nan")
    mode: str = "lockstep"
    resent: int = 0
    out_of_order: int = 0
    min_answered: float = 0.0

    @property
    def skipped(self) -> int:
        return self.frames - self.answered

    @property
    def problems(self) -> list[str]:
        out = []
        if self.mode == "lockstep" and self.skipped:
            out.append(f"{self.skipped} frame(s) unanswered")
        if self.mode == "timed" and self.answered < self.min_answered * self.frames:
            out.append(f"{self.answered}/{self.frames} answered < --min-answered {self.min_answered:g}")
        if self.out_of_order:
            out.append(f"{self.out_of_order} answer(s) out of order")
        if self.golden is not None and not self.golden.passed:
            out.append(f"golden max diff {self.golden.max_abs_diff:.2e} > {self.golden.tolerance:g}"
                       if self.golden.compared else "no frame in common with the golden run")
            if self.golden.missing or self.golden.extra:
                out[-1] += f" ({self.golden.missing} missing, {self.golden.extra} extra)"
        return out

    @property
    def regression(self) -> bool:
        return bool(self.problems)


def format_table(reports: Sequence[EpisodeReport]) -> str:
    head = (f"{'episode':<28} {'task':<20} {'answered':>9} {'skipped':>7} {'resent':>6} {'MAE':>7} {'RMSE':>7} "
            f"{'max':>7} {'p50 ms':>7} {'golden max diff':>16} {'result':>10}")
    lines = [head, "-" * len(head)]
    for r in reports:
        g = r.golden
        gtxt = "-" if g is None else (f"{g.max_abs_diff:.2e}" + (f" ({g.missing} missing)" if g.missing else ""))
        lines.append(f"{r.name[:28]:<28} {r.task[:20]:<20} {r.answered:>4}/{r.frames:<4} {r.skipped:>7} "
                     f"{r.resent:>6} {r.errors.mae:>7.4f} "
                     f"{r.errors.rmse:>7.4f} {r.errors.max_abs:>7.4f} {r.latency_ms_p50:>7.1f} {gtxt:>16} "
                     f"{'REGRESSION' if r.regression else 'ok':>10}")
    return "\n".join(lines)


def plot(reports: Sequence[EpisodeReport], series: Sequence[tuple[str, np.ndarray, np.ndarray]], out: Path) -> Path:
    """One panel per action dimension: recorded vs replayed first action, per episode (PNG)."""
    from matplotlib.figure import Figure  # why here: matplotlib is not a runtime (robot) dependency

    dims = max((s[1].shape[1] for s in series), default=1)
    fig = Figure(figsize=(7, 1.6 * dims + 0.6))
    axes = fig.subplots(dims, 1, sharex=True, squeeze=False)
    for name, recorded, replayed in series:
        for d in range(dims):
            ax = axes[d, 0]
            ax.plot(recorded[:, d], lw=1, label=f"{name} recorded")
            ax.plot(replayed[:, d], lw=1, ls="--", label=f"{name} replayed")
            ax.set_ylabel(f"a[{d}]")
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("frame")
    fig.suptitle("; ".join(f"{r.name}: {'REGRESSION' if r.regression else 'ok'}" for r in reports)[:120], fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def replayed_series(answers: dict[int, np.ndarray], stamps: np.ndarray, action_dim: int) -> np.ndarray:
    """(T, A) first actions in frame order, NaN where the frame was not answered (for the plot)."""
    out = np.full((len(stamps), action_dim), np.nan, np.float32)
    for i, s in enumerate(stamps):
        if int(s) in answers:
            out[i] = answers[int(s)][0]
    return out


__all__ = ["ActionErrors", "EpisodeReport", "EpisodeTopics", "GoldenResult", "action_errors", "compare_golden",
           "format_table", "plot", "read_action_chunks", "replayed_series"]
