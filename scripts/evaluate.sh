#!/usr/bin/env bash
# Evaluate a model on task YAMLs (files or folders of them), on one machine.
#
#   [MODEL_CONFIG=configs/model_glm_tiny.sh] [DATA_PATH=data] [OUTPUT_DIR=outputs] \
#   [MP_SIZE=N] [DP_SIZE=M] bash scripts/evaluate.sh TASK.yaml TASK_DIR/ ... [more evaluate.py flags]
#
# MODEL_CONFIG is a shell file that sets MODEL_ARGS (and may define prepare_model);
# default: the embedded tiny GLM. Each run gets OUTPUT_DIR/<timestamp>/ holding
# results.json, predictions/ and console.log (the console output, tee'd by evaluate.py).
#
# Processes: MP_SIZE is the tensor-parallel size (processes per model replica) and DP_SIZE
# the number of data-parallel replicas, so MP_SIZE x DP_SIZE processes run. The model
# config sets their defaults (MP_SIZE=8 for GLM-130B); the environment overrides them.
# One process runs evaluate.py directly; more are started with torchrun --nproc_per_node,
# one per GPU (CUDA_VISIBLE_DEVICES picks them) or, on a CPU, each with
# OMP_NUM_THREADS = cores / processes unless OMP_NUM_THREADS is set. MASTER_PORT picks the
# rendezvous port (default: a free one). Several nodes: scripts/evaluate_multiple_node.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
MODEL_CONFIG="${MODEL_CONFIG:-$ROOT/configs/model_glm_tiny.sh}"
if [ ! -f "$MODEL_CONFIG" ]; then
    echo "error: MODEL_CONFIG=$MODEL_CONFIG: no such file (see configs/)" >&2
    exit 2
fi
ENV_MP_SIZE="${MP_SIZE:-}"
ENV_DP_SIZE="${DP_SIZE:-}"
# shellcheck source=/dev/null
source "$MODEL_CONFIG"
MP_SIZE="${ENV_MP_SIZE:-${MP_SIZE:-1}}"   # the environment wins over the config's default
DP_SIZE="${ENV_DP_SIZE:-${DP_SIZE:-1}}"
DATA_PATH="${DATA_PATH:-$ROOT/data}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs}"
for pair in "MP_SIZE=$MP_SIZE" "DP_SIZE=$DP_SIZE"; do
    case "${pair#*=}" in
        ''|*[!0-9]*|0) echo "error: $pair: expected a positive integer" >&2; exit 2 ;;
    esac
done
if [ "$#" -eq 0 ]; then
    echo "usage: bash scripts/evaluate.sh TASK.yaml|TASK_DIR [...] [evaluate.py flags]" >&2
    exit 2
fi
if declare -F prepare_model >/dev/null; then
    prepare_model
fi
NPROC=$((MP_SIZE * DP_SIZE))
# MODEL_ARGS is deliberately unquoted: it is a list of flags, as in the GLM-130B configs.
# --model-parallel-size comes last so that MP_SIZE from the environment wins.
if [ "$NPROC" -eq 1 ]; then
    # shellcheck disable=SC2086
    exec "$PYTHON" "$ROOT/evaluate.py" --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" \
        --output-dir "$OUTPUT_DIR" $MODEL_ARGS --model-parallel-size "$MP_SIZE" "$@"
fi
# Check every YAML, data file and model flag once, in one process, before MP_SIZE x DP_SIZE
# processes start and wait on each other: problems are reported once, with exit code 2.
# (Each rank validates again and the ranks compare digests of what they read.)
# shellcheck disable=SC2086
"$PYTHON" "$ROOT/evaluate.py" --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" \
    $MODEL_ARGS --model-parallel-size "$MP_SIZE" "$@" --validate-only >/dev/null
if [ -z "${OMP_NUM_THREADS:-}" ]; then
    CORES="$(nproc 2>/dev/null || echo 1)"
    OMP_NUM_THREADS=$((CORES / NPROC))
    [ "$OMP_NUM_THREADS" -ge 1 ] || OMP_NUM_THREADS=1
    export OMP_NUM_THREADS
fi
if [ -n "${MASTER_PORT:-}" ]; then
    RENDEZVOUS=(--master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "$MASTER_PORT")
else
    RENDEZVOUS=(--standalone)
fi
# shellcheck disable=SC2086
exec "$PYTHON" -m torch.distributed.run "${RENDEZVOUS[@]}" --nproc_per_node "$NPROC" "$ROOT/evaluate.py" \
    --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" $MODEL_ARGS \
    --model-parallel-size "$MP_SIZE" "$@"
