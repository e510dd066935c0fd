# GLM-130B with INT4 weight-only quantization (the four linear layers of every block; embeddings
# and norms stay 16-bit): about 63 GiB of weights instead of 240.
# CHECKPOINT_PATH may be the float checkpoint (quantized while loading, one tensor at a time)
# or a pre-quantized one written by
#   python -m evaluation.tools.convert_tp FP16_DIR INT4_DIR --tensor-parallel 1 --quantization-bit-width 4
# Published (GLM-130B paper): INT8 MMLU 44.709 / LAMBADA 80.206; INT4 MMLU 44.801 / LAMBADA 79.468.
# GLM-130B's own INT4 setting: 4 x RTX 3090 (24 GB), so MP_SIZE defaults to 4 here; an 8-way
# float checkpoint is re-split 8 -> 4 on load and each shard quantized on its own.
MP_SIZE="${MP_SIZE:-4}"
# shellcheck source=configs/model_glm_130b.sh
source "$(dirname "${BASH_SOURCE[0]}")/model_glm_130b.sh"
MODEL_TYPE="glm-130b-int4"
MODEL_ARGS="${MODEL_ARGS} --quantization-bit-width 4"
