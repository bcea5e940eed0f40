"""onnxruntime policy runtime. Imports neither torch nor rclpy."""
