#!/usr/bin/env bash
# CI regression gate: evaluate a model on a task set, compare the run with a stored baseline
# run, write the reports, and exit with the comparison's code (0: no significant regression
# beyond the margin, 1: a regression, 2: bad input, e.g. a baseline of other items).
#
#   BASELINE=baselines/glm-130b-int8 [MODEL_CONFIG=configs/...] [DATA_PATH=data] [OUTPUT_DIR=outputs] \
#   [LIMIT=100] [MARGIN=1.0] [REPORT_DIR=OUTPUT_DIR/<run>/comparison] \
#       bash scripts/ci_regression.sh [TASK.yaml|TASK_DIR ...] [-- more evaluate.py flags]
#
# Default task set: tasks/lambada tasks/mmlu tasks/clue, whose data is prepared from RAW_DATA
# (default ../shared/data) into DATA_PATH when missing or stale. LIMIT (default 100; 0 = all)
# is the number of items per file: the baseline must have been made with the same set and
# LIMIT, or the items do not pair (exit 2). UPDATE_BASELINE=1 makes this run the new
# baseline (copied to BASELINE) after the comparison, whatever its outcome.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "error: scripts/ci_regression.sh: $*" >&2; exit 2; }

TASKS=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do TASKS+=("$1"); shift; done
[ "$#" -gt 0 ] && shift  # the "--"
DEFAULT_SET=0
if [ "${#TASKS[@]}" -eq 0 ]; then
    TASKS=("$ROOT/tasks/lambada" "$ROOT/tasks/mmlu" "$ROOT/tasks/clue")
    DEFAULT_SET=1
fi
[ -n "${BASELINE:-}" ] || fail "set BASELINE to the run folder to compare with (make one with UPDATE_BASELINE=1)"
export DATA_PATH="${DATA_PATH:-$ROOT/data}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs}"
LIMIT="${LIMIT:-100}"
MARGIN="${MARGIN:-1.0}"
if [ "$DEFAULT_SET" = 1 ]; then
    RAW_DATA="${RAW_DATA:-$ROOT/../shared/data}"
    "$PYTHON" -m evaluation.prepare --if-stale --raw "$RAW_DATA" --out "$DATA_PATH" lambada mmlu clue >&2
fi
RUN_NAME="ci-$(date +%Y%m%d-%H%M%S)-$$"
LIMIT_FLAGS=()
[ "$LIMIT" = 0 ] || LIMIT_FLAGS=(--limit "$LIMIT")
bash "$ROOT/scripts/evaluate.sh" "${TASKS[@]}" --run-name "$RUN_NAME" --no-progress "${LIMIT_FLAGS[@]}" "$@"
NEW="$OUTPUT_DIR/$RUN_NAME"
REPORT_DIR="${REPORT_DIR:-$NEW/comparison}"
if [ ! -f "$BASELINE/results.json" ]; then
    if [ "${UPDATE_BASELINE:-0}" = 1 ]; then
        mkdir -p "$(dirname "$BASELINE")"
        cp -r "$NEW" "$BASELINE"
        echo "> no baseline at $BASELINE yet: this run ($NEW) is now the baseline" >&2
        exit 0
    fi
    fail "BASELINE=$BASELINE holds no results.json (make one with UPDATE_BASELINE=1)"
fi
set +e
"$PYTHON" -m evaluation.compare "$BASELINE" "$NEW" --out "$REPORT_DIR" --margin "$MARGIN" --labels "baseline,new"
CODE=$?
set -e
echo "> report: $REPORT_DIR/report.md, report.html, report.json (exit code $CODE)" >&2
if [ "${UPDATE_BASELINE:-0}" = 1 ]; then
    rm -rf "$BASELINE"
    cp -r "$NEW" "$BASELINE"
    echo "> $BASELINE replaced by this run" >&2
fi
exit "$CODE"
