"""processing.py: image decoding for every encoding, preprocessing, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_adapter_ros import processing as P


def _rgb(h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_color_encodings_decode_to_rgb(encoding):
    rgb = _rgb()
    if encoding == "rgb8":
        raw = rgb
    elif encoding == "bgr8":
        raw = rgb[..., ::-1]
    elif encoding == "rgba8":
        raw = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    else:
        raw = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    out = P.image_to_rgb(np.ascontiguousarray(raw).tobytes(), encoding, 5, 7)
    np.testing.assert_array_equal(out, rgb)


def test_mono8_replicates_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = P.image_to_rgb(gray.tobytes(), "mono8", 3, 4)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_row_padding_is_skipped_and_last_row_may_be_short():
    rgb = _rgb(4, 3)
    step = 3 * 3 + 5
    padded = np.zeros((4, step), np.uint8)
    padded[:, :9] = rgb.reshape(4, 9)
    np.testing.assert_array_equal(P.image_to_rgb(padded.tobytes(), "rgb8", 4, 3, step), rgb)
    np.testing.assert_array_equal(P.image_to_rgb(padded.tobytes()[:-5], "rgb8", 4, 3, step), rgb)


@pytest.mark.parametrize(
    ("data", "encoding", "h", "w", "step", "match"),
    [
        (b"\0" * 12, "yuv422", 2, 2, None, "unsupported image encoding 'yuv422'"),
        (b"\0" * 11, "rgb8", 2, 2, None, "has 11 bytes"),
        (b"\0" * 13, "rgb8", 2, 2, None, "more than step"),
        (b"\0" * 12, "rgb8", 2, 2, 5, "step 5 is smaller"),
        (b"", "rgb8", 0, 2, None, "must be positive"),
        (b"", "rgb8", 100000, 100000, None, "pixel limit"),
    ],
)
def test_bad_images_give_clear_errors(data, encoding, h, w, step, match):
    with pytest.raises(P.ProcessingError, match=match):
        P.image_to_rgb(data, encoding, h, w, step)


def test_preprocess_resizes_and_scales():
    rgb = np.full((40, 60, 3), 255, np.uint8)
    rgb[..., 1] = 0
    out = P.preprocess_image(rgb, (16, 16))
    assert out.shape == (3, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], -1.0)
    with pytest.raises(P.ProcessingError):
        P.preprocess_image(rgb[..., 0], (16, 16))


def test_normalizer_round_trip_and_validation():
    x = np.random.default_rng(1).normal(3.0, 2.0, (100, 4)).astype(np.float32)
    x[:, 3] = 1.0  # constant dimension must not blow up
    n = P.Normalizer.fit(x)
    z = n.normalize(x)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(n.denormalize(z), x, rtol=1e-5, atol=1e-5)
    assert P.Normalizer.from_dict(n.to_dict()).to_dict() == n.to_dict()
    with pytest.raises(ValueError, match="non-finite"):
        P.Normalizer([np.nan], [1.0])
    with pytest.raises(ValueError, match="keys"):
        P.Normalizer.from_dict({"mu": [0]})


def test_normalize_instruction():
    assert P.normalize_instruction("  open   the\tdrawer \n") == "open the drawer"


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    encoding=st.sampled_from([*P.ENCODING_CHANNELS, "16UC1", ""]),
    h=st.integers(-2, 12),
    w=st.integers(-2, 12),
    step=st.one_of(st.none(), st.integers(-5, 60)),
)
def test_fuzz_image_to_rgb_either_decodes_or_raises_processing_error(data, encoding, h, w, step):
    try:
        out = P.image_to_rgb(data, encoding, h, w, step)
    except P.ProcessingError:
        return
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_normalizer_floor_is_kept_through_its_dict_only_when_not_the_default():
    from vla_adapter_ros.processing import Normalizer

    default = Normalizer(np.zeros(2), np.array([1e-4, 2.0]))
    assert default.to_dict() == {"mean": [0.0, 0.0], "std": [pytest.approx(1e-2), 2.0]}  # floored, no "eps" key
    lerobot = Normalizer(np.zeros(2), np.array([1e-4, 2.0]), eps=1e-8)  # SmolVLA exports: LeRobot's statistics
    back = Normalizer.from_dict(lerobot.to_dict())
    assert back.eps == 1e-8 and back.std[0] == pytest.approx(1e-4)
    assert back.normalize(np.array([1e-4, 2.0]))[0] == pytest.approx(1.0)
