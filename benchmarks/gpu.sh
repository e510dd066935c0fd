#!/usr/bin/env bash
# One GPU check, under 8 minutes on one large GPU (an H100/H200-class card):
#   1. fp16 / bf16 parity of the GLM-130B network against the fp32 SwissArmyTransformer fixtures
#      (tests/test_reference_parity.py: its CUDA tests, and its table of deviations per dtype);
#   2. the Hugging Face backend's throughput in bf16 (benchmarks/hf_throughput.py: a SmolLM2-shaped
#      Llama, SDPA flash / memory-efficient kernels, shared-prefix reuse on and off);
#   3. a GLM-130B-shaped slice, four full-width layers (hidden 12288, 96 heads, GeGLU 32768), in bf16,
#      with its model FLOP utilisation (benchmarks/glm_throughput.py --glm130b-slice).
#
#   bash benchmarks/gpu.sh                 # on the GPU machine (PYTHON: an interpreter with the project's deps)
#   bash benchmarks/gpu.sh --dry-run       # on CPU: every step with CPU-sized shapes, no CUDA
#
# PEAK_TFLOPS (default 989, the H100/H200 SXM dense bf16 figure) sets the MFU denominator.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
PEAK_TFLOPS="${PEAK_TFLOPS:-989}"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PYTHON; run with --dry-run to check the script on CPU" >&2
    exit 2
fi
step() { echo; echo "=== $* ($(date +%H:%M:%S))"; }
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

step "1/3 reference parity: fp32 / fp16 / bf16 against the fp32 SAT fixtures"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_reference_parity.py -rs
"$PYTHON" tests/test_reference_parity.py

step "2/3 Hugging Face backend throughput"
if [ "$DRY" = 1 ]; then
    "$PYTHON" benchmarks/hf_throughput.py --device cpu --dtype fp32 --items 8 --prefix 200 --question 40
else
    "$PYTHON" benchmarks/hf_throughput.py --device cuda --dtype bf16 --items 4000 --max-batch-tokens 65536
    "$PYTHON" benchmarks/hf_throughput.py --device cuda --dtype fp32 --items 1000 --max-batch-tokens 65536
fi

step "3/3 GLM-130B-shaped slice: model FLOP utilisation"
if [ "$DRY" = 1 ]; then
    "$PYTHON" benchmarks/glm_throughput.py --device cpu --dtype fp32 --layers 2 --hidden 256 --heads 4 --inner 688 \
        --shapes 2x128 --repeat 2 --peak-tflops 1
else
    "$PYTHON" benchmarks/glm_throughput.py --glm130b-slice --device cuda --dtype bf16 --shapes 4x2048 16x512 1x2048 \
        --repeat 5 --peak-tflops "$PEAK_TFLOPS" --profile
fi
echo; echo "done ($(date +%H:%M:%S))"
