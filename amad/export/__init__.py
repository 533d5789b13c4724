"""Deployable artefacts: ONNX (fp32 / int8 / fp16) with embedded metadata, and TensorRT engines."""
