"""Stage 5: measure an ONNX model on a profile: latency, accuracy of the ONNX model, size."""
