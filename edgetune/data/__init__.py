"""Stage 1: load a dataset (file, folder, hub id) as train/validation and encode it for ONNX."""
