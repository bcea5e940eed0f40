"""The ament_python package and the interfaces package are well formed."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_files_parse_with_catkin_pkg():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    assert pkg.name == "vla_adapter_ros" and pkg.get_build_type() == "ament_python"
    deps = {d.name for d in pkg.exec_depends}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "vla_adapter_interfaces"} <= deps
    iface = parse_package(str(ROOT / "vla_adapter_interfaces" / "package.xml"))
    assert iface.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in iface.member_of_groups]


def test_setup_py_installs_share_files(setup_spec):
    installed = {f for _, files in setup_spec["data_files"] for f in files}
    assert "resource/vla_adapter_ros" in installed and "package.xml" in installed
    for folder in ("launch", "config", "models"):
        on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert on_disk <= installed, f"{folder}: not installed: {sorted(on_disk - installed)}"
    scripts = {e.split("=")[0].strip() for e in setup_spec["entry_points"]["console_scripts"]}
    assert "vla-adapter" in scripts


def test_interfaces_install_space_is_built():
    share = ROOT / "build" / "install" / "vla_adapter_interfaces" / "share" / "vla_adapter_interfaces"
    assert (share / "srv" / "SwitchAdapter.srv").is_file()
    assert (share / "msg" / "ActionChunk.msg").is_file()


def _requirements(name: str) -> list:
    from packaging.requirements import Requirement

    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [Requirement(ln.split("#")[0].strip()) for ln in lines if ln.split("#")[0].strip()]


def _applies(req, python: str, machine: str = "x86_64") -> bool:
    return req.marker is None or req.marker.evaluate({"python_version": python, "platform_machine": machine})


def test_runtime_requirements_pin_one_version_per_python():
    """Humble / JetPack 6 (3.10), Kilted (3.11), Jazzy (3.12): one pin of each package applies, and
    the CPU onnxruntime is the default (the GPU build is runtime-gpu.txt's)."""
    for python in ("3.10", "3.11", "3.12"):
        for machine in ("x86_64", "aarch64"):
            names = [r.name for r in _requirements("runtime.txt") if _applies(r, python, machine)]
            assert sorted(names) == sorted(set(names)), (python, machine, names)
            assert {"numpy", "onnxruntime", "opencv-python-headless", "tokenizers", "rosbags"} <= set(names)
            assert "onnxruntime-gpu" not in names and "torch" not in names


def test_gpu_requirements_are_the_runtime_ones_with_the_gpu_build():
    cpu, gpu = _requirements("runtime.txt"), _requirements("runtime-gpu.txt")
    nvidia = {"onnxruntime-gpu", "tensorrt-cu13-libs", "tensorrt-cu12-libs"}
    assert [str(r) for r in cpu if r.name != "onnxruntime"] == [str(r) for r in gpu if r.name not in nvidia]
    for python in ("3.10", "3.11", "3.12"):
        applied = {r.name: r for r in gpu if _applies(r, python)}
        assert "onnxruntime" not in applied and applied["onnxruntime-gpu"].extras == {"cuda", "cudnn"}
        assert any(n.startswith("tensorrt-cu1") for n in applied), python
        assert not [r for r in gpu if r.name in nvidia and _applies(r, python, "aarch64")]  # Jetson: NVIDIA's wheels


def test_test_runner_pins_follow_dev():
    dev = {r.name: r for r in _requirements("dev.txt")}
    for req in _requirements("test.txt"):
        if _applies(req, "3.11"):
            assert str(req.specifier) == str(dev[req.name].specifier), req
