# GLM-130B (70 layers, hidden 12288, 96 heads, GeGLU 32768, vocab 150528, 2048 positions).
# Point CHECKPOINT_PATH at a checkpoint in the SAT layout (a 'latest' file plus
# <iter>/mp_rank_XX_model_states.pt) and ICETK_MODEL at icetk's ice_text.model.
# The public release is 8-way tensor parallel and needs 8 x A100-40G (or 8 x RTX 3090 in
# INT8, 4 x RTX 3090 in INT4) in fp16: MP_SIZE=8 processes, each loading its mp_rank_XX
# shard directly. Another MP_SIZE (environment) re-splits the shards on load; MP_SIZE=1
# merges them into one process. DP_SIZE (default 1) replicas of the 8 run side by side;
# more nodes: scripts/evaluate_multiple_node.sh with a hostfile.
MODEL_TYPE="glm-130b"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-/path/to/glm-130b-checkpoint}"
ICETK_MODEL="${ICETK_MODEL:-$HOME/.icetk_models/ice_text.model}"
MP_SIZE="${MP_SIZE:-8}"
MODEL_ARGS="--model-parallel-size ${MP_SIZE} \
            --num-layers 70 \
            --hidden-size 12288 \
            --inner-hidden-size 32768 \
            --vocab-size 150528 \
            --num-attention-heads 96 \
            --max-sequence-length 2048 \
            --tokenizer-type icetk-glm-130b \
            --tokenizer-model ${ICETK_MODEL} \
            --layernorm-order post \
            --load ${CHECKPOINT_PATH} \
            --skip-init \
            --fp16"
