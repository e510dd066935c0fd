# Tiny GLM-130B-architecture model (2 layers, hidden 64, 4 heads, icetk-style tokenizer
# of 500 text pieces) made by the project itself: the default model of the quick start
# and of the tests. prepare_model builds it on first use, deterministically, in seconds.
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-tiny"
CHECKPOINT_PATH="${TINY_GLM_PATH:-$GLM_EVAL_ROOT/.cache/glm-tiny}"
MP_SIZE=1
MODEL_ARGS="--model-parallel-size ${MP_SIZE} \
            --num-layers 2 \
            --hidden-size 64 \
            --inner-hidden-size 128 \
            --num-attention-heads 4 \
            --vocab-size 20544 \
            --max-sequence-length 512 \
            --tokenizer-type icetk-glm-130b \
            --tokenizer-model ${CHECKPOINT_PATH}/ice_text.model \
            --layernorm-order post \
            --load ${CHECKPOINT_PATH}"

prepare_model() {
    # Builds the model when absent, and rebuilds it when the code that makes it has changed
    # (recipe.sha256), so an old cached tiny model is never silently used.
    "$PYTHON" -m evaluation.tools.make_tiny_glm "$CHECKPOINT_PATH" --if-stale
}
