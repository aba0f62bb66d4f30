"""Stage 3: export to ONNX with optimum and check it against PyTorch."""
