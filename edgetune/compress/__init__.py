"""Stage 4: compression passes (ONNX: fusion, quantization; PyTorch: pruning) and named modes."""
