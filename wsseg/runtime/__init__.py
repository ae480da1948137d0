"""Inference on the robot side: ONNX Runtime / TensorRT engines and the ``Segmenter``."""

from wsseg.runtime.segmenter import SegmentationResult, Segmenter

__all__ = ["SegmentationResult", "Segmenter"]
