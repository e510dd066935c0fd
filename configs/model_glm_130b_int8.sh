# GLM-130B with INT8 weight-only quantization (the four linear layers of every block; embeddings
# and norms stay 16-bit): about 122 GiB of weights instead of 240.
# CHECKPOINT_PATH may be the float checkpoint (quantized while loading, one tensor at a time)
# or a pre-quantized one written by
#   python -m evaluation.tools.convert_tp FP16_DIR INT8_DIR --tensor-parallel 1 --quantization-bit-width 8
# Published (GLM-130B paper): INT8 MMLU 44.709 / LAMBADA 80.206; INT4 MMLU 44.801 / LAMBADA 79.468.
# shellcheck source=configs/model_glm_130b.sh
source "$(dirname "${BASH_SOURCE[0]}")/model_glm_130b.sh"
MODEL_TYPE="glm-130b-int8"
MODEL_ARGS="${MODEL_ARGS} --quantization-bit-width 8"
