"""ament_python package vla_adapter_ros (also pip-installable)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "vla_adapter_ros"
ROOT = Path(__file__).resolve().parent


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Every file under `folder`, installed to share/<pkg>/<same relative dir>."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(ROOT)
            out.setdefault(f"share/{PACKAGE}/{rel.parent}", []).append(str(rel))
    return sorted(out.items())


def read_requirements(group: str) -> list[str]:
    lines = (ROOT / "requirements" / f"{group}.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip() and not ln.startswith("-")]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        *share_files("launch"),
        *share_files("config"),
        *share_files("models"),
    ],
    python_requires=">=3.10",
    # ROS packages (rclpy, messages) come from the ROS install or requirements/ros.txt.
    install_requires=read_requirements("runtime"),
    extras_require={"train": read_requirements("train"), "dev": read_requirements("dev")},
    zip_safe=False,
    maintainer="vla_adapter_ros maintainers",
    maintainer_email="maintainers@vla-adapter-ros.org",
    description="Adapter-tuned VLA policies on ROS 2 with onnxruntime",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vla-adapter = vla_adapter_ros.cli:main",
            "vla_adapter_node = vla_adapter_ros.ros.policy_node:main",
            "vla_adapter_sim = vla_adapter_ros.ros.sim_node:main",
            "vla_adapter_executor = vla_adapter_ros.ros.executor_node:main",
        ],
    },
)
