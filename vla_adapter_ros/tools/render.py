"""`vla-adapter render BAG... --out FILE.mp4`: an episode bag as a video anyone can watch.

Each frame set of the episode (read and aligned by :func:`vla_adapter_ros.bags.episodes.read_episode`,
the reader training uses) becomes one video frame: every camera of the bag's robot contract side by
side (the single camera of a bag without one), and under them the task, the adapter that answered
(the ActionChunk's ``adapter``; the recorder's ``action_source`` for expert demonstrations), the
instruction, the action values by name and the success flag (the last ``EpisodeStatus`` at or
before the frame). Several bags play one after another in one file.

Encoding is OpenCV's (its bundled FFmpeg): ``.mp4`` as MPEG-4 part 2 (``mp4v``, what the
opencv-python wheels can encode), ``.gif`` as an animated GIF (``cv2.imwriteanimation``) for
documentation. No torch, no rclpy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vla_adapter_ros.bags import typestore as ts
from vla_adapter_ros.bags.align import DEFAULT_ACTION_SOURCE
from vla_adapter_ros.bags.episodes import Episode, find_episodes, read_episode
from vla_adapter_ros.bags.errors import BagError
from vla_adapter_ros.bags.layout import DEFAULT_TOPICS
from vla_adapter_ros.bags.reader import Role, read_roles, stored_contract
from vla_adapter_ros.contract import ContractError, RobotContract
from vla_adapter_ros.decoding import stamp_to_ns

FORMATS = (".mp4", ".gif", ".png")
MIN_VIEW_HEIGHT = 240  # px: small cameras (96x96) are scaled up by an integer factor to at least this
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE, LINE_PX, MARGIN = 0.45, 18, 6
WHITE, GREY, GREEN, RED = (255, 255, 255), (170, 170, 170), (60, 200, 60), (230, 60, 60)  # RGB
PANEL_LINES = 4  # task/adapter/step, instruction, actions, success


class RenderError(ValueError):
    """The request cannot be rendered (bad output name, no frames, frames of different sizes)."""


@dataclass
class EpisodeFrames:
    """What one video frame shows, for every frame of one episode."""

    episode: Episode
    adapters: list[str]  # (T,) the adapter that answered each frame ("" unknown)
    success: list[bool | None]  # (T,) success flag at each frame (None: the bag has no EpisodeStatus)


def _annotations(path: Path, contract: RobotContract | None, episode: Episode) -> tuple[list[str], list[bool | None]]:
    """Adapter and success flag per frame from the bag's ActionChunks and EpisodeStatus messages."""
    source = (contract.action_source or DEFAULT_ACTION_SOURCE) if contract is not None else None
    topic = source.topic if source is not None else DEFAULT_TOPICS.action
    roles = [Role("episode", "/vla/episode", (ts.EPISODE_STATUS,), required=False, may_be_empty=True)]
    if source is None or source.type == "ActionChunk":
        roles.append(Role("action", topic, (ts.ACTION_CHUNK, ts.FLOAT32_MULTI_ARRAY), required=False,
                          may_be_empty=True))
    bag = read_roles(path, roles, ts.make_typestore())
    by_stamp: dict[int, str] = {}
    if bag.types.get("action") == ts.ACTION_CHUNK:
        for _, msg in bag.messages["action"]:
            by_stamp.setdefault(stamp_to_ns(msg.header.stamp), str(msg.adapter))
    fallback = str(episode.metadata.get("action_source", "")) or ("expert" if "expert" in str(
        episode.metadata.get("source", "")) else "")
    adapters = [by_stamp.get(int(s), fallback) for s in episode.stamps]
    statuses = sorted((stamp_to_ns(m.header.stamp), bool(m.success)) for _, m in bag.messages.get("episode", []))
    if not statuses:
        flag: bool | None = episode.success
        return adapters, [flag if i == len(episode) - 1 else None for i in range(len(episode))]
    stamps = np.asarray([s for s, _ in statuses], np.int64)
    success: list[bool | None] = []
    for stamp in episode.stamps:
        k = int(np.searchsorted(stamps, stamp, side="right"))
        success.append(any(ok for _, ok in statuses[:k]))
    return adapters, success


def load(path: Path, contract: RobotContract | None = None) -> EpisodeFrames:
    """One bag read through ``contract`` (default: the one stored in the bag, else the single-camera topics)."""
    contract = contract if contract is not None else stored_contract(path)
    episode = read_episode(path, contract=contract)
    adapters, success = _annotations(path, contract, episode)
    return EpisodeFrames(episode, adapters, success)


def view_scale(height: int) -> int:
    """The integer up-scaling of a camera ``height`` px high (nearest neighbour keeps pixels honest)."""
    return max(1, -(-MIN_VIEW_HEIGHT // max(height, 1)))


def canvas_size(episode: Episode) -> tuple[int, int]:
    """(height, width) of the frames of ``episode``: its cameras side by side (each scaled by
    :func:`view_scale` of the tallest) over a text panel."""
    tallest = max(v.shape[1] for v in episode.views.values())
    k = view_scale(tallest)
    width = sum(v.shape[2] * k for v in episode.views.values())
    width = max(width, 480)  # room for the text
    width += width % 2  # even sizes: what most decoders want
    height = tallest * k + LINE_PX + PANEL_LINES * LINE_PX + 2 * MARGIN
    return height + height % 2, width


def _fit(text: str, width_px: int) -> str:
    """``text`` shortened with '...' to fit ``width_px`` in the panel font."""
    if cv2.getTextSize(text, FONT, TEXT_SCALE, 1)[0][0] <= width_px:
        return text
    while text and cv2.getTextSize(text + "...", FONT, TEXT_SCALE, 1)[0][0] > width_px:
        text = text[:-1]
    return text + "..."


def _put(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int] = WHITE) -> None:
    cv2.putText(canvas, _fit(text, canvas.shape[1] - x - MARGIN), (x, y), FONT, TEXT_SCALE, color, 1, cv2.LINE_AA)


def frames(item: EpisodeFrames, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The video frames (H, W, 3) uint8 RGB of one episode; ``size`` (H, W) resizes them (several bags, one video)."""
    ep = item.episode
    height, width = canvas_size(ep)
    k = view_scale(max(v.shape[1] for v in ep.views.values()))
    names = ep.action_names or tuple(f"a{i}" for i in range(ep.actions.shape[1]))
    for t in range(len(ep)):
        canvas = np.zeros((height, width, 3), np.uint8)
        x = 0
        for name, view in ep.views.items():
            big = np.repeat(np.repeat(view[t], k, axis=0), k, axis=1)  # (h*k, w*k, 3)
            canvas[LINE_PX:LINE_PX + big.shape[0], x:x + big.shape[1]] = big
            _put(canvas, name, x + MARGIN, LINE_PX - 5, GREY)
            x += big.shape[1]
        y = LINE_PX + max(v.shape[1] for v in ep.views.values()) * k + MARGIN + LINE_PX - 4
        _put(canvas, f"{ep.task or '?'}  adapter {item.adapters[t] or '-'}  frame {t + 1}/{len(ep)}", MARGIN, y)
        _put(canvas, f'"{ep.instructions[t]}"', MARGIN, y + LINE_PX, GREY)
        _put(canvas, "action " + " ".join(f"{n} {v:+.2f}" for n, v in zip(names, ep.actions[t], strict=True)),
             MARGIN, y + 2 * LINE_PX)
        ok = item.success[t]
        flag = "success: -" if ok is None else "success: YES" if ok else "success: no"
        _put(canvas, flag, MARGIN, y + 3 * LINE_PX, GREY if ok is None else GREEN if ok else RED)
        if size is not None and (height, width) != size:
            yield np.asarray(cv2.resize(canvas, (size[1], size[0]), interpolation=cv2.INTER_AREA), np.uint8)
        else:
            yield canvas


def episode_fps(episode: Episode) -> float:
    """Frames per second of ``episode`` from its stamps (median period), 10 when it cannot tell."""
    if len(episode) < 2:
        return 10.0
    period = float(np.median(np.diff(episode.stamps))) * 1e-9
    return float(np.clip(1.0 / period, 1.0, 60.0)) if period > 0 else 10.0


@dataclass
class RenderSummary:
    out: Path
    episodes: int
    frames: int
    size: tuple[int, int]  # (H, W)
    fps: float
    seconds: float


def render(bags: Sequence[Path], out: Path, *, contract: RobotContract | None = None, fps: float | None = None,
           every: int = 1, stills: int = 4) -> RenderSummary:
    """Render ``bags`` one after another into ``out`` (.mp4 or .gif); every ``every``-th frame.

    ``.png``: a contact sheet instead, one row per bag of ``stills`` frames spread evenly over the
    episode, its last frame included (for documents: success and failure side by side)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise RenderError(f"--out {out}: the file name must end in one of {FORMATS}")
    if every < 1 or stills < 1:
        raise RenderError(f"--every and --stills must be >= 1, got {every} and {stills}")
    start = time.perf_counter()
    items = [load(Path(p), contract) for p in bags]
    if not items:
        raise RenderError("no episode bags to render")
    size = canvas_size(items[0].episode)
    rate = fps if fps is not None else episode_fps(items[0].episode) / every
    if rate <= 0:
        raise RenderError(f"--fps must be > 0, got {rate}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")  # a failed render leaves no half video under out
    n = 0
    try:
        video = (f for item in items for i, f in enumerate(frames(item, size)) if i % every == 0)
        if out.suffix.lower() == ".png":
            n = _write_sheet(tmp, items, size, stills)
        elif out.suffix.lower() == ".gif":
            n = _write_gif(tmp, video, rate)
        else:
            n = _write_mp4(tmp, video, rate, size)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return RenderSummary(out, len(items), n, size, rate, time.perf_counter() - start)


def _write_sheet(path: Path, items: Sequence[EpisodeFrames], size: tuple[int, int], stills: int) -> int:
    rows = []
    for item in items:
        picks = set(np.linspace(0, len(item.episode) - 1, min(stills, len(item.episode))).round().astype(int).tolist())
        row = [f for i, f in enumerate(frames(item, size)) if i in picks]
        row += [np.zeros_like(row[0])] * (stills - len(row))  # a short episode: blank cells
        rows.append(np.concatenate(row, axis=1))
    if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)):
        raise RenderError(f"OpenCV could not write {path}")
    return sum(min(stills, len(item.episode)) for item in items)


def _write_mp4(path: Path, video: Iterator[np.ndarray], fps: float, size: tuple[int, int]) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise RenderError(f"OpenCV cannot open an mp4v video writer for {path} (OpenCV built without FFmpeg?)")
    n = 0
    try:
        for frame in video:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        writer.release()
    return n


def _write_gif(path: Path, video: Iterator[np.ndarray], fps: float) -> int:
    animation = cv2.Animation()
    animation.frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in video]
    animation.durations = [max(20, round(1000 / fps))] * len(animation.frames)  # ms; GIF counts 10 ms units
    if not cv2.imwriteanimation(str(path), animation):
        raise RenderError(f"OpenCV could not write the GIF {path}")
    return len(animation.frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", help="episode bags (directories, parents searched recursively, or globs)")
    parser.add_argument("--out", type=Path, required=True,
                        help="video file: .mp4, or .gif for documentation; .png: a contact sheet of --stills frames")
    parser.add_argument("--contract", type=Path, default=None,
                        help="robot contract to read the bags with (default: the one stored in each bag)")
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the bag's frame rate)")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame (shorter GIFs; default 1)")
    parser.add_argument("--stills", type=int, default=4,
                        help="--out FILE.png: frames per bag in the contact sheet (a row per bag; default 4)")


def run(args: argparse.Namespace) -> int:
    try:
        contract = RobotContract.load(args.contract) if args.contract else None
        summary = render(find_episodes(args.bags), args.out, contract=contract, fps=args.fps, every=args.every,
                         stills=args.stills)
    except (BagError, ContractError, RenderError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    mib = summary.out.stat().st_size / 2**20
    print(f"wrote {summary.out}: {summary.episodes} episode(s), {summary.frames} frames {summary.size[1]}x"
          f"{summary.size[0]} at {summary.fps:.1f} fps, {mib:.2f} MiB, in {summary.seconds:.1f} s")
    return 0
