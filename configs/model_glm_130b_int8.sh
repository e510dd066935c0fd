# GLM-130B with INT8 weight-only quantization (the four linear layers of every block; embeddings
# and norms stay 16-bit): about 122 GiB of weights instead of 240.
# CHECKPOINT_PATH may be the float checkpoint (quantized while loading, one tensor at a time)
# or a pre-quantized one written by
#   python -m evaluation.tools.convert_tp FP16_DIR INT8_DIR --tensor-parallel 1 --quantization-bit-width 8
# Published (GLM-130B paper): INT8 MMLU 44.709 / LAMBADA 80.206; INT4 MMLU 44.801 / LAMBADA 79.468.
MODEL_TYPE="glm-130b-int8"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-<your checkpoint path>}"
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
            --quantization-bit-width 8 \
            --load ${CHECKPOINT_PATH} \
            --skip-init \
            --fp16"
