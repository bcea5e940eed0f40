"""Small ROS-free command-line tools (version, doctor)."""
