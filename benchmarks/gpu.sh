#!/usr/bin/env bash
# The benchmark comparisons on a GPU, in a few minutes; installs nothing.
#   bash benchmarks/gpu.sh [OUT_DIR]
# Needs a JAX with CUDA (and, for the cuDNN comparison, a CUDA PyTorch) already importable.
# Writes OUT_DIR/gpu_step_time.json, OUT_DIR/gpu_step_time_bf16.json (bfloat16 matmuls) and
# OUT_DIR/gpu_step_time.txt (the printed tables).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp}}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  $PY -c "import jax; print('jax', jax.__version__, jax.devices())"
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" || true
  # Paper sizes (H, D, B, T), the DRAW cell, and a large batch: training and inference.
  $PY benchmarks/step_time.py \
    --sizes=1000x50x32x100,1000x50x64x100,256x50x128x64,256x264x128x64,1000x50x256x100 \
    --repeats=20 --warmup=3 --json_out="$OUT/gpu_step_time.json"
  # Mixed precision: bfloat16 products (float32 state and constants) against float32.
  $PY benchmarks/step_time.py \
    --sizes=1000x50x32x100,1000x50x256x100 \
    --variants=lstm,normprop,lstm@bfloat16,normprop@bfloat16 \
    --repeats=20 --warmup=3 --json_out="$OUT/gpu_step_time_bf16.json"
} 2>&1 | tee "$OUT/gpu_step_time.txt"
