"""rosbag2 episodes via the rosbags library. Never imports rclpy."""
