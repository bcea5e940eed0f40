"""SmolVLA (LeRobot) as a second policy family.

``bridge`` (main venv, no torch): finds the LeRobot venv (``scripts/lerobot_env.sh``) and runs
``worker`` in it. Everything else here (``tiny``, ``model``, ``graphs``, ``train``, ``worker``) imports
torch + lerobot and runs only in the LeRobot venv. The torch-free serving side is
``vla_adapter_ros.runtime.smolvla``.
"""
