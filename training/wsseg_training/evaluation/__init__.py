"""Evaluation: confusion matrix and IoU metrics, per-point predictions (PyTorch or a model bundle
through ONNX Runtime), and the written report (metrics.json, report.md, pictures)."""

from wsseg_training.evaluation.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
