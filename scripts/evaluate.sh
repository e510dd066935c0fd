#!/usr/bin/env bash
# Evaluate a model on task YAMLs (files or folders of them).
#
#   [MODEL_CONFIG=configs/model_glm_tiny.sh] [DATA_PATH=data] [OUTPUT_DIR=outputs] \
#       bash scripts/evaluate.sh TASK.yaml TASK_DIR/ ... [more evaluate.py flags]
#
# MODEL_CONFIG is a shell file that sets MODEL_ARGS (and may define prepare_model);
# default: the embedded tiny GLM. Each run gets OUTPUT_DIR/<timestamp>/ holding
# results.json, predictions/ and console.log (the console output, tee'd by evaluate.py).
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
# shellcheck source=/dev/null
source "$MODEL_CONFIG"
DATA_PATH="${DATA_PATH:-$ROOT/data}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs}"
if [ "${MP_SIZE:-1}" != "1" ]; then
    echo "error: $MODEL_CONFIG sets MP_SIZE=$MP_SIZE; tensor-parallel runs are not supported yet (use a 1-way checkpoint)" >&2
    exit 2
fi
if [ "$#" -eq 0 ]; then
    echo "usage: bash scripts/evaluate.sh TASK.yaml|TASK_DIR [...] [evaluate.py flags]" >&2
    exit 2
fi
if declare -F prepare_model >/dev/null; then
    prepare_model
fi
# MODEL_ARGS is deliberately unquoted: it is a list of flags, as in the GLM-130B configs.
# shellcheck disable=SC2086
exec "$PYTHON" "$ROOT/evaluate.py" --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" \
    --output-dir "$OUTPUT_DIR" $MODEL_ARGS "$@"
