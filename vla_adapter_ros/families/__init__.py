"""Policy families beside the package's own VLA.

Each family's code that imports torch or its upstream library runs in that family's own venv
(``families.<name>.worker``, started as a subprocess by ``vla-adapter``); the main venv and the robot
never import it. The torch-free serving side of a family lives in ``vla_adapter_ros.runtime``.
"""
