#!/usr/bin/env bash
# Prints shell commands that prepare a shell for this project:
#   eval "$(make -s env)"
# venv on PATH, the vla_adapter_interfaces install space sourced, and DDS kept
# on this machine (loopback + shared memory) in a domain of its own.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLA_VENV:-$ROOT/.venv}"
domain="${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}"
cat <<SH
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:\$PATH"
export COLCON_PYTHON_EXECUTABLE="$VENV/bin/python"
# colcon's setup scripts read unset variables: source them with nounset off.
case \$- in *u*) _vla_u=1; set +u;; *) _vla_u=;; esac
if [ -f "$ROOT/build/install/local_setup.bash" ]; then . "$ROOT/build/install/local_setup.bash"; else echo "vla_adapter_ros: interfaces not built yet, run: make setup" >&2; fi
[ -n "\$_vla_u" ] && set -u; unset _vla_u
export AMENT_PREFIX_PATH="$ROOT/build/install/vla_adapter_interfaces:$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=$domain
export FASTDDS_DEFAULT_PROFILES_FILE="$ROOT/config/fastdds_localhost.xml"
export MUJOCO_GL=\${MUJOCO_GL:-egl}
SH
