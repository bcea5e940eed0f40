"""PyTorch core: model, adapters, data, training, export. Never imports rclpy."""
