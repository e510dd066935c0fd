#!/usr/bin/env bash
# Quick start: install into .venv, build the embedded tiny GLM and the demo data,
# then evaluate the demo task suite (tasks/demo). Results land in outputs/<timestamp>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh"
export DATA_PATH="${DATA_PATH:-$ROOT/.cache/demo-data}"
if [ ! -d "$DATA_PATH/demo" ]; then
    PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m evaluation.tools.make_demo_data "$DATA_PATH"
fi
exec bash "$ROOT/scripts/evaluate.sh" "$ROOT/tasks/demo" "$@"
