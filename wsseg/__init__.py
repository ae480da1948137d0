"""wsseg: weakly supervised 3D semantic segmentation, robot side (numpy + ONNX Runtime + rclpy)."""

__version__ = "0.1.0"
