# GLM-130B (70 layers, hidden 12288, 96 heads, GeGLU 32768, vocab 150528, 2048 positions).
# Point CHECKPOINT_PATH at a checkpoint in the SAT layout (a 'latest' file plus
# <iter>/mp_rank_XX_model_states.pt) and ICETK_MODEL at icetk's ice_text.model.
# The public release is 8-way tensor parallel; this build runs one process and merges
# the shards on load (or re-shard once: python -m evaluation.tools.convert_tp IN OUT --tensor-parallel 1).
MODEL_TYPE="glm-130b"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-/path/to/glm-130b-checkpoint}"
ICETK_MODEL="${ICETK_MODEL:-$HOME/.icetk_models/ice_text.model}"
MP_SIZE=1
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
