"""`vla-adapter render`: bags to videos, read back with OpenCV's decoder (frame count, size, pixels)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vla_adapter_ros.bags.episodes import EpisodeWriter, read_episode
from vla_adapter_ros.cli import main
from vla_adapter_ros.contract import RobotContract
from vla_adapter_ros.tools import render

DEMO_BAG = Path(__file__).resolve().parents[1] / "data" / "demo_bag"
SAWYER = RobotContract.load(Path(__file__).resolve().parents[2] / "config" / "robots" / "metaworld_sawyer.yaml")
T0 = 1_700_000_000_000_000_000


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB, decoded by OpenCV (its FFmpeg), not by our writer."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


def test_render_demo_bag_to_mp4(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["render", str(DEMO_BAG), "--out", str(out)]) == 0
    assert f"wrote {out}: 1 episode(s), 32 frames" in capsys.readouterr().out
    episode = read_episode(DEMO_BAG)
    video = read_video(out)
    h, w = render.canvas_size(episode)
    assert len(video) == len(episode) == 32 and video[0].shape == (h, w, 3)
    # the camera region is the bag's image scaled up (nearest), within the mp4v codec's error
    k = render.view_scale(96)
    top = render.LINE_PX
    for t in (0, 31):
        region = video[t][top:top + 96 * k, :96 * k].astype(np.float32)
        want = np.repeat(np.repeat(episode.images[t], k, 0), k, 1).astype(np.float32)
        assert np.abs(region - want).mean() < 6.0, t  # measured ~2.5 (mp4v at OpenCV's default quality)
    assert np.abs(video[0][top:top + 96 * k].astype(int) - video[31][top:top + 96 * k]).mean() > 5  # the arm moved
    assert not list(tmp_path.glob(".*partial*"))


def test_render_two_cameras_side_by_side_with_success_and_adapter(tmp_path):
    rng = np.random.default_rng(0)
    corner = rng.integers(0, 255, (6, 96, 96, 3), np.uint8)
    wrist = np.zeros_like(corner)
    wrist[..., 1] = 200  # a green wrist view: easy to find in the decoded video
    with EpisodeWriter(tmp_path / "ep", task="reach-v3", seed=1, contract=SAWYER, action_source="reach") as writer:
        for t in range(6):
            writer.write_step(T0 + t * 50_000_000, {"corner": corner[t], "wrist": wrist[t]}, np.zeros(4),
                              np.full(4, t / 10), instruction="reach the goal", success=t == 5)
    item = render.load(tmp_path / "ep")
    assert item.episode.cameras == ("corner", "wrist") and item.adapters == ["reach"] * 6
    assert item.success == [False] * 5 + [True]  # the final EpisodeStatus says success
    out = tmp_path / "ep.gif"
    summary = render.render([tmp_path / "ep"], out)
    assert (summary.frames, summary.fps) == (6, 20.0)
    video = read_video(out)
    k = render.view_scale(96)
    assert len(video) == 6 and video[0].shape[:2] == render.canvas_size(item.episode)
    wrist_px = video[0][render.LINE_PX + 10:render.LINE_PX + 96 * k - 10, 96 * k + 10:2 * 96 * k - 10]
    assert wrist_px[..., 1].mean() > 150 and wrist_px[..., 0].mean() < 50  # right of the corner view
    panel = slice(render.LINE_PX + 96 * k, None)
    green = [int(((f[panel, :, 1] > 150) & (f[panel, :, 0] < 120)).sum()) for f in video]
    assert green[-1] > 50 and green[0] == 0  # "success: YES" in green on the last frame only


def test_render_bad_input_names_what_is_wrong(tmp_path, capsys):
    assert main(["render", str(DEMO_BAG), "--out", str(tmp_path / "x.avi")]) == 1
    assert "must end in one of ('.mp4', '.gif', '.png')" in capsys.readouterr().err
    contract = Path(__file__).resolve().parents[2] / "config" / "robots" / "metaworld_sawyer.yaml"
    assert main(["render", str(DEMO_BAG), "--contract", str(contract), "--out", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err
    assert "/camera/corner/image_raw" in err and str(DEMO_BAG) in err
    assert main(["render", str(tmp_path / "none"), "--out", str(tmp_path / "x.mp4")]) == 1
    assert "no rosbag2 episodes" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("height", [96, 240, 480])
def test_view_scale_reaches_the_minimum_height(height):
    assert height * render.view_scale(height) >= render.MIN_VIEW_HEIGHT


def test_contact_sheet_has_a_row_per_bag_of_evenly_spread_frames(tmp_path):
    out = tmp_path / "sheet.png"
    summary = render.render([DEMO_BAG, DEMO_BAG], out, stills=3)
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    item = render.load(DEMO_BAG)
    h, w = render.canvas_size(item.episode)
    assert summary.frames == 6 and sheet.shape == (2 * h, 3 * w, 3)
    every = list(render.frames(item))
    for col, t in enumerate((0, 16, 31)):  # first, middle (15.5 rounds to 16), last
        assert np.array_equal(sheet[h:, col * w:(col + 1) * w], every[t]), t  # PNG: exact
