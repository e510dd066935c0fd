# GLM-515M (model_blocklm_1.5_generation.sh: 30 layers, hidden 1152): the original GLM architecture (pre-LN, learned position + block position
# embeddings, GELU MLP of width 4 x hidden, output tied to the word embeddings): 30 layers,
# hidden 1152, 18 heads, 512 positions, vocabulary 30592 rows (the tokenizer's ids padded to a
# multiple of 128, as THUDM/GLM saves the embedding), tokenizer glm-bert.
# CHECKPOINT_PATH: THUDM/GLM's released folder (blocklm-1.5-generation: latest_checkpointed_iteration.txt +
# <iter>/mp_rank_00_model_states.pt).
# The tokenizer files are in ../shared/tokenizers/glm (GLM_TOKENIZERS to point elsewhere).
# No weights are shipped or downloaded: the shape and tokenizer here are tested on a tiny model
# of the same architecture (configs/model_glm_original_tiny.sh), not on these weights.
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-515m"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-/path/to/blocklm-1.5-generation}"
MP_SIZE="${MP_SIZE:-1}"
MODEL_ARGS="--architecture glm \
            --model-parallel-size ${MP_SIZE} \
            --num-layers 30 \
            --hidden-size 1152 \
            --num-attention-heads 18 \
            --max-position-embeddings 512 \
            --vocab-size 30592 \
            --tokenizer-type glm-bert \
            --tokenizer-model ${GLM_TOKENIZERS:-$GLM_EVAL_ROOT/../shared/tokenizers/glm}/bert-base-uncased-vocab.txt \
            --load ${CHECKPOINT_PATH}"
