"""Deployment tooling: ONNX export of the five Gmos parts, TensorRT op check, engine builder.

- `training.export.onnx_export` (``gmos-export``): fixed-shape ONNX graphs + metadata JSON,
  checked against torch in onnxruntime;
- `training.export.trt_ops`: static check of an ONNX graph against TensorRT's operator list;
- `training.export.engines` (``gmos-build-engines``): TensorRT engines in a keyed cache that
  refuses stale or foreign engines.
"""
