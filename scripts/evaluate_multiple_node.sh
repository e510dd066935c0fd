#!/usr/bin/env bash
# Evaluate on several nodes with the DeepSpeed launcher, as GLM-130B's script did.
#
#   HOSTFILE=hostfile [NUM_WORKERS=N] [NUM_GPUS_PER_WORKER=G] [MODEL_CONFIG=configs/...] \
#   [DATA_PATH=data] [OUTPUT_DIR=outputs] [RUN_NAME=name] [MP_SIZE=...] \
#       bash scripts/evaluate_multiple_node.sh TASK.yaml TASK_DIR/ ... [more evaluate.py flags]
#
# HOSTFILE (HOST_FILE_PATH is accepted too) lists the nodes, OpenMPI style, one per line:
#     worker-1 slots=8
#     worker-2 slots=8
# NUM_WORKERS (default: every host in the file) nodes with NUM_GPUS_PER_WORKER processes each
# (default: the first host's slots) run; MP_SIZE (the model config's default, or the
# environment) consecutive ranks form one tensor-parallel model, so NUM_WORKERS x
# NUM_GPUS_PER_WORKER must be a multiple of it and the rest is data parallel.
#
# By default DeepSpeed starts every node from this one over passwordless ssh (pdsh). Without
# ssh, start this script once on every node, with the same RUN_NAME, and
#     NO_SSH=1 NODE_RANK=k MASTER_ADDR=<address of the node with NODE_RANK=0> MASTER_PORT=<free port>
# (a two-node run can be simulated on one machine that way: MASTER_ADDR=127.0.0.1 and one
# start per "node"). OPTIONS_NCCL (default GLM-130B's "NCCL_IB_DISABLE=0 NCCL_NET_GDR_LEVEL=2
# CUDA_LAUNCH_BLOCKING=0") is put in the environment; DeepSpeed forwards NCCL_* and PYTHON*
# variables and those in a .deepspeed_env file to every node. The launcher's console output
# is tee'd into OUTPUT_DIR/RUN_NAME/launcher-node<NODE_RANK>.log; rank 0 writes results.json,
# predictions/ and console.log into the same folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "error: scripts/evaluate_multiple_node.sh: $*" >&2; exit 2; }

HOSTFILE="${HOSTFILE:-${HOST_FILE_PATH:-}}"
[ -n "$HOSTFILE" ] || fail "set HOSTFILE to an OpenMPI-style hostfile (lines like 'worker-1 slots=8')"
[ -f "$HOSTFILE" ] || fail "HOSTFILE=$HOSTFILE: no such file"
HOSTS="$(grep -E '^[[:space:]]*[^#[:space:]]+[[:space:]]+slots=[0-9]+' "$HOSTFILE" || true)"
[ -n "$HOSTS" ] || fail "HOSTFILE=$HOSTFILE has no 'host slots=N' line"
NUM_WORKERS="${NUM_WORKERS:-$(printf '%s\n' "$HOSTS" | wc -l | tr -d ' ')}"
NUM_GPUS_PER_WORKER="${NUM_GPUS_PER_WORKER:-$(printf '%s\n' "$HOSTS" | head -n1 | sed -E 's/.*slots=([0-9]+).*/\1/')}"
"$PYTHON" -c 'import deepspeed.launcher.runner' 2>/dev/null \
    || fail "the DeepSpeed launcher is not installed in $PYTHON: bash scripts/setup_venv.sh distributed"

MODEL_CONFIG="${MODEL_CONFIG:-$ROOT/configs/model_glm_tiny.sh}"
[ -f "$MODEL_CONFIG" ] || fail "MODEL_CONFIG=$MODEL_CONFIG: no such file (see configs/)"
ENV_MP_SIZE="${MP_SIZE:-}"
# shellcheck source=/dev/null
source "$MODEL_CONFIG"
MP_SIZE="${ENV_MP_SIZE:-${MP_SIZE:-1}}"
for pair in "NUM_WORKERS=$NUM_WORKERS" "NUM_GPUS_PER_WORKER=$NUM_GPUS_PER_WORKER" "MP_SIZE=$MP_SIZE"; do
    case "${pair#*=}" in
        ''|*[!0-9]*|0) fail "$pair: expected a positive integer" ;;
    esac
done
WORLD=$((NUM_WORKERS * NUM_GPUS_PER_WORKER))
[ $((WORLD % MP_SIZE)) -eq 0 ] || fail "$NUM_WORKERS nodes x $NUM_GPUS_PER_WORKER processes = $WORLD is not a multiple of MP_SIZE=$MP_SIZE"
[ "$#" -gt 0 ] || fail "usage: HOSTFILE=FILE bash scripts/evaluate_multiple_node.sh TASK.yaml|TASK_DIR [...] [evaluate.py flags]"
if declare -F prepare_model >/dev/null; then
    prepare_model
fi
DATA_PATH="${DATA_PATH:-$ROOT/data}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs}"
RUN_NAME="${RUN_NAME:-$(date +%Y%m%d-%H%M%S)}"
NODE_RANK="${NODE_RANK:-0}"
mkdir -p "$OUTPUT_DIR/$RUN_NAME"
LOG="$OUTPUT_DIR/$RUN_NAME/launcher-node$NODE_RANK.log"

# Check every YAML, data file and model flag once, in one process, before the launcher starts
# the ranks: problems are reported once, with exit code 2 (the ranks validate again and
# compare digests of what they read, so nodes that see different files are refused too).
# shellcheck disable=SC2086
"$PYTHON" "$ROOT/evaluate.py" --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" \
    --run-name "$RUN_NAME" $MODEL_ARGS --model-parallel-size "$MP_SIZE" "$@" --validate-only >/dev/null

LAUNCH=(--hostfile "$HOSTFILE" --num_nodes "$NUM_WORKERS" --num_gpus "$NUM_GPUS_PER_WORKER")
if [ "${NO_SSH:-0}" = 1 ]; then
    [ -n "${MASTER_ADDR:-}" ] || fail "NO_SSH=1 needs MASTER_ADDR (the address of the node started with NODE_RANK=0)"
    LAUNCH+=(--no_ssh --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}")
else
    [ -z "${MASTER_ADDR:-}" ] || LAUNCH+=(--master_addr "$MASTER_ADDR")
    [ -z "${MASTER_PORT:-}" ] || LAUNCH+=(--master_port "$MASTER_PORT")
fi
if [ -z "${OMP_NUM_THREADS:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    # CPU processes: share this node's cores instead of oversubscribing them.
    OMP_NUM_THREADS=$(( $(nproc 2>/dev/null || echo 1) / NUM_GPUS_PER_WORKER ))
    [ "$OMP_NUM_THREADS" -ge 1 ] || OMP_NUM_THREADS=1
    export OMP_NUM_THREADS
fi
OPTIONS_NCCL="${OPTIONS_NCCL:-NCCL_IB_DISABLE=0 NCCL_NET_GDR_LEVEL=2 CUDA_LAUNCH_BLOCKING=0}"
echo "> $(date '+%F %T') node $NODE_RANK of $NUM_WORKERS, $NUM_GPUS_PER_WORKER processes each, MP_SIZE=$MP_SIZE; log: $LOG" >&2
# OPTIONS_NCCL and MODEL_ARGS are deliberately unquoted: lists of assignments and of flags.
# shellcheck disable=SC2086
env $OPTIONS_NCCL "$PYTHON" -m deepspeed.launcher.runner "${LAUNCH[@]}" "$ROOT/evaluate.py" \
    --model-config "$MODEL_CONFIG" --data-path "$DATA_PATH" --output-dir "$OUTPUT_DIR" --run-name "$RUN_NAME" \
    $MODEL_ARGS --model-parallel-size "$MP_SIZE" "$@" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
