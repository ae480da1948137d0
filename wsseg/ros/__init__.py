"""ROS 2 glue (rclpy nodes, message <-> numpy); the algorithms live in wsseg.core and wsseg.runtime."""
