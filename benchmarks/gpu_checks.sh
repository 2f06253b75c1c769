#!/usr/bin/env bash
# Issue 8's GPU checks as one script for a leased GPU machine (BENCHMARKS.md has the results):
#   1. rollout engine vs model.generate at batch 64 and 256 (bf16, then fp32);
#   2. GRPO on Arithmetic-v0 with SmolLM2-135M-Instruct for two minutes, in bf16 and in fp32.
# Usage: bash benchmarks/gpu_checks.sh PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR [MINUTES]
set -euo pipefail
model=$1
out=$2
minutes=${3:-2}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__)" | tee -a "$out/gpu.txt"
for dtype in bfloat16 float32; do
  python3 benchmarks/rollout_throughput.py --model "$model" --device cuda --dtype $dtype \
    --batch-sizes 64 256 --new-tokens 128 --out "$out/rollout_$dtype.json"
done
for dtype in bfloat16 float32; do
  python3 benchmarks/learn_arithmetic.py --model "$model" --device cuda --dtype $dtype \
    --minutes "$minutes" --out-dir "/tmp/learn_arithmetic_$dtype"
  cp "/tmp/learn_arithmetic_$dtype/result.json" "$out/learn_arithmetic_$dtype.json"
done
