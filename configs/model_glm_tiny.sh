# Tiny GLM-130B-architecture model (2 layers, hidden 64, 4 heads, icetk-style tokenizer
# of 500 text pieces) made by the project itself: the default model of the quick start
# and of the tests. prepare_model builds it on first use, deterministically, in seconds.
# TINY_GLM_TP=N saves it as N shards (as an N-way run would); MP_SIZE (default 1, tensor
# parallel processes) may differ: the shards are re-split on load. Any of 1, 2 and 4
# divides its 4 heads, GeGLU width 128 and vocabulary 20544.
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-tiny"
TINY_GLM_TP="${TINY_GLM_TP:-1}"
TINY_GLM_SEED="${TINY_GLM_SEED:-1234}"  # another seed: another model of the same shape (the regression tests use 99)
if [ "$TINY_GLM_TP" = 1 ]; then
    CHECKPOINT_PATH="${TINY_GLM_PATH:-$GLM_EVAL_ROOT/.cache/glm-tiny}"
else
    CHECKPOINT_PATH="${TINY_GLM_PATH:-$GLM_EVAL_ROOT/.cache/glm-tiny-tp$TINY_GLM_TP}"
fi
MP_SIZE="${MP_SIZE:-1}"
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
    "$PYTHON" -m evaluation.tools.make_tiny_glm "$CHECKPOINT_PATH" --if-stale --tensor-parallel "$TINY_GLM_TP" --seed "$TINY_GLM_SEED"
}
