#!/usr/bin/env bash
# Multi-node evaluation (DeepSpeed launcher with an OpenMPI-style hostfile,
# data parallel + tensor parallel) is planned but not implemented in this build.
# Until it lands, run scripts/evaluate.sh on a single process.
echo "error: scripts/evaluate_multiple_node.sh: multi-node / multi-process evaluation is not yet supported;" >&2
echo "       use 'bash scripts/evaluate.sh TASK.yaml ...' (one process, 1-way checkpoint)." >&2
exit 2
