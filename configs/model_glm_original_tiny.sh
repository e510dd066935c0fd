# Tiny ORIGINAL-GLM model (THUDM/GLM's architecture: pre-LN, learned position + block position
# embeddings, GELU; 2 layers, hidden 64, 4 heads) with the tiny icetk-style tokenizer, made by the
# project itself for the tests: the stand-in for GLM-Base/Large/10B, whose weights are not here.
# TINY_GLM_LAYOUT=thudm (THUDM/GLM's latest_checkpointed_iteration.txt + mp_rank_00) or hf (the
# Hub layout of THUDM/glm-*: config.json + pytorch_model.bin with glm. keys).
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-original-tiny"
TINY_GLM_LAYOUT="${TINY_GLM_LAYOUT:-thudm}"
TINY_GLM_SEED="${TINY_GLM_SEED:-1234}"
# TINY_GLM_TP=N saves the thudm layout as N shards (mp_rank_00 .. ), as an N-way THUDM/GLM run would.
TINY_GLM_TP="${TINY_GLM_TP:-1}"
CHECKPOINT_PATH="${TINY_GLM_PATH:-$GLM_EVAL_ROOT/.cache/glm-original-tiny-$TINY_GLM_LAYOUT$([ "$TINY_GLM_TP" = 1 ] || echo "-tp$TINY_GLM_TP")}"
MP_SIZE="${MP_SIZE:-1}"
MODEL_ARGS="--architecture glm \
            --model-parallel-size ${MP_SIZE} \
            --num-layers 2 \
            --hidden-size 64 \
            --num-attention-heads 4 \
            --vocab-size 20544 \
            --max-sequence-length 512 \
            --tokenizer-type icetk-glm-130b \
            --tokenizer-model ${CHECKPOINT_PATH}/ice_text.model \
            --load ${CHECKPOINT_PATH}"

prepare_model() {
    "$PYTHON" -m evaluation.tools.make_tiny_glm "$CHECKPOINT_PATH" --architecture glm --layout "$TINY_GLM_LAYOUT" \
        --if-stale --seed "$TINY_GLM_SEED" --tensor-parallel "$TINY_GLM_TP"
}
