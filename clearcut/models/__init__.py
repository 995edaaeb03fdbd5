"""Model store (fetch + verify) and ONNX Runtime segmentation sessions."""
