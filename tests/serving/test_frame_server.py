"""FrameServer: the serving rules of the policy node, with a real onnxruntime policy and no ROS graph."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.processing import ProcessingError
from vla_adapter_ros.runtime.policy import OnnxPolicy
from vla_adapter_ros.serving import stats as st
from vla_adapter_ros.serving.frame_server import Frame, FrameServer
from vla_adapter_ros.serving.inputs import InputBuffer

NOW = 1_000_000_000_000
RGB = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
STATE = np.array([0.1, 0.2, 0.3, 0.5], np.float32)


class Bad(ProcessingError):
    kind = "image_encoding"


@pytest.fixture()
def setup(tiny_model_dir):
    policy = OnnxPolicy.from_dir(tiny_model_dir, providers=["cpu"])
    inputs = InputBuffer(needs_state=True, max_skew_s=0.01)
    stats, logged, serving = st.ServingStats(), [], [True]
    server = FrameServer(policy, inputs, stats, st.ProblemLog(logged.append), now_ns=lambda: NOW,
                         max_image_age=lambda: 1.0, serving=lambda: serving[0], newer_frame_waiting=lambda: False,
                         log_warning=logged.append, log_error=logged.append)
    yield server, policy, inputs, stats, logged, serving
    policy.close()


def frame(stamp: int = NOW, rgb: np.ndarray = RGB) -> Frame:
    return Frame(stamp, 0.0, decode=lambda: rgb)


def test_a_complete_frame_gives_the_policys_own_chunk(setup):
    server, policy, inputs, stats, _, _ = setup
    inputs.set_instruction("open the drawer")
    inputs.add_state(NOW, STATE)
    served = server.serve(frame())
    want = policy.infer(RGB, "open the drawer", STATE).actions
    assert served is not None and np.array_equal(served.result.actions, want)
    assert served.result.adapter == "pick" and served.inference_s > 0
    assert stats.snapshot()["counts"] == {}  # nothing refused, nothing skipped


@pytest.mark.parametrize("case, counter", [
    ("stale", st.STALE), ("no_instruction", st.NO_INSTRUCTION), ("no_state", st.NO_PROPRIO),
    ("state_skew", st.PROPRIO_SKEW), ("inactive", st.INACTIVE)])
def test_every_unserved_frame_is_counted_and_reported(setup, case, counter):
    server, _, inputs, stats, logged, serving = setup
    if case != "no_instruction":
        inputs.set_instruction("go")
    if case != "no_state":
        inputs.add_state(NOW - (10**9 if case == "state_skew" else 0), STATE)
    serving[0] = case != "inactive"
    stamp = NOW - 5 * 10**9 if case == "stale" else NOW
    assert server.serve(frame(stamp)) is None
    assert stats.snapshot()["counts"] == {counter: 1}
    assert case == "inactive" or logged, "reported in the log"


def test_a_malformed_image_is_refused_first_with_its_kind(setup):
    server, _, _, stats, logged, _ = setup

    def decode() -> np.ndarray:
        raise Bad("unsupported image encoding '16UC1'")

    assert server.serve(Frame(NOW, 0.0, decode)) is None  # refused before waiting for inputs
    assert stats.snapshot()["refused"] == {"image_encoding": 1} and "16UC1" in logged[0]


def test_non_finite_output_is_an_error_not_a_chunk(setup):
    server, _, inputs, stats, _, _ = setup
    inputs.set_instruction("go")
    inputs.add_state(NOW, np.array([0.1, 0.2, 3e38, 0.5], np.float32))
    assert server.serve(frame()) is None
    assert stats.snapshot()["errors"] == {"non_finite_output": 1}


def test_a_provider_failing_at_run_time_rebuilds_the_sessions_and_serving_resumes(setup):
    server, policy, inputs, stats, logged, _ = setup
    inputs.set_instruction("go")
    inputs.add_state(NOW, STATE)
    good = server.serve(frame()).result.actions
    policy._state.run_options.terminate = True  # the next run fails inside onnxruntime
    assert server.serve(frame()) is None
    snap = stats.snapshot()
    assert snap["errors"] == {"provider_run": 1} and snap["counts"] == {st.PROVIDER_FALLBACKS: 1}
    assert server.provider_failures == 1 and "sessions rebuilt" in logged[-1]
    again = server.serve(frame())
    assert again is not None and np.array_equal(again.result.actions, good) and server.provider_failures == 0
