"""vla_adapter_ros: adapter-tuned Vision-Language-Action policies on ROS 2.

Subpackages and their boundaries:

- ``core``     PyTorch model, adapters, data, training, evaluation, export (torch; no rclpy)
- ``runtime``  onnxruntime policy serving (numpy/OpenCV/onnxruntime; no torch, no rclpy)
- ``bags``     rosbag2 read/write/replay helpers built on the ``rosbags`` library (no rclpy)
- ``ros``      thin rclpy glue: nodes, QoS, conversions, service clients
"""

__version__ = "0.1.0"
