"""The policy node's serving logic without ROS: what a frame needs before it is served, the
latest-frame-wins worker, counters. Imports neither rclpy nor torch (tests check); the ROS
node only converts messages and publishes."""
