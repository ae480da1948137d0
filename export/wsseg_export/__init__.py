"""wsseg export: ONNX export with folded BatchNorm, TensorRT build, parity checks."""
