"""`vla-adapter switch` against a real SwitchAdapter server in another process (loopback DDS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vla_adapter_ros.ros.harness import NodeProcess

pytestmark = pytest.mark.ros
FIXTURE = Path(__file__).parent / "fixtures" / "switch_server.py"


@pytest.fixture()
def switch_server(ros_env, tmp_path):
    """The fixture server in its own process; the CLI under test waits for its service itself."""
    name = f"switch_fixture_{os.getpid()}"
    with NodeProcess([sys.executable, str(FIXTURE), name, "pick,place,open"], ros_env, tmp_path / "server.log"):
        yield f"/{name}"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_switch_known_adapter(switch_server, ros_env):
    out = cli("switch", "place", "--node", switch_server, "--timeout", "20", env=ros_env)
    assert out.returncode == 0, out.stderr
    assert "ok: switched to place" in out.stdout
    assert "active: place" in out.stdout and "previous: pick" in out.stdout


def test_switch_unknown_adapter_is_refused_with_names(switch_server, ros_env):
    out = cli("switch", "fly", "--node", switch_server, "--timeout", "20", env=ros_env)
    assert out.returncode == 1
    assert "refused" in out.stdout and "pick, place, open" in out.stdout
    assert "active: pick" in out.stdout


def test_unreachable_service_fails_fast_and_clearly(ros_env):
    start = time.monotonic()
    out = cli("switch", "pick", "--node", "/nobody_here", "--timeout", "1.5", env=ros_env)
    elapsed = time.monotonic() - start
    assert out.returncode == 3
    assert "/nobody_here/switch_adapter not available" in out.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_await_reply_resends_and_the_first_reply_wins():
    """A reply that does not come (lost after discovery, or late) does not stall the caller: the request is
    sent again every resend_s and the first answer is taken. Real rclpy client and server on loopback DDS;
    the server holds its first reply for 2 s."""
    import threading

    import rclpy
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor

    from vla_adapter_interfaces.srv import ListAdapters
    from vla_adapter_ros.ros.harness import await_reply

    context = rclpy.Context()
    rclpy.init(context=context)
    calls: list[float] = []
    held_reply_sent = threading.Event()

    def handle(_request, response):
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(2.0)  # the scenario: a server slow to answer this one request
            response.active_adapter = "late"
            held_reply_sent.set()
        else:
            response.active_adapter = "resent"
        return response

    server = rclpy.create_node(f"resend_server_{os.getpid()}", context=context)
    server.create_service(ListAdapters, "~/list", handle, callback_group=ReentrantCallbackGroup())
    caller = rclpy.create_node(f"resend_client_{os.getpid()}", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(server)
    executor.add_node(caller)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        client = caller.create_client(ListAdapters, f"/resend_server_{os.getpid()}/list")
        assert client.wait_for_service(timeout_sec=20)
        t0 = time.monotonic()
        future = await_reply(client, ListAdapters.Request(), timeout_s=10.0, resend_s=0.5)
        assert future is not None and future.result().active_adapter == "resent"
        assert time.monotonic() - t0 < 1.8 and len(calls) == 2
        assert held_reply_sent.wait(10)  # the held first reply goes out and is ignored
        held_reply_sent.clear()
        calls.clear()
        future = await_reply(client, ListAdapters.Request(), timeout_s=10.0, resend_s=0.0)  # no resend: waits
        assert future.result().active_adapter == "late" and len(calls) == 1
    finally:
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5)
        server.destroy_node()
        caller.destroy_node()
