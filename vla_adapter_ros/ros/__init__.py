"""rclpy glue: nodes, QoS profiles, message conversions, service clients."""
