# GLM-Base (110M; THUDM/GLM config_tasks/model_blocklm_base.sh): the original GLM architecture (pre-LN, learned position + block position
# embeddings, GELU MLP of width 4 x hidden, output tied to the word embeddings): 12 layers,
# hidden 768, 12 heads, 512 positions, vocabulary 30592 rows (the tokenizer's ids padded to a
# multiple of 128, as THUDM/GLM saves the embedding), tokenizer glm-bert.
# CHECKPOINT_PATH: THUDM/GLM's released folder (blocklm-base-blank: latest_checkpointed_iteration.txt +
# <iter>/mp_rank_00_model_states.pt) or a download of the Hub repo THUDM/glm-base (config.json + pytorch_model.bin; read weights-only, its remote code is never run).
# The tokenizer files are in ../shared/tokenizers/glm (GLM_TOKENIZERS to point elsewhere).
# No weights are shipped or downloaded: the shape and tokenizer here are tested on a tiny model
# of the same architecture (configs/model_glm_original_tiny.sh), not on these weights.
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-base"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-/path/to/blocklm-base-blank}"
MP_SIZE="${MP_SIZE:-1}"
MODEL_ARGS="--architecture glm \
            --model-parallel-size ${MP_SIZE} \
            --num-layers 12 \
            --hidden-size 768 \
            --num-attention-heads 12 \
            --max-position-embeddings 512 \
            --vocab-size 30592 \
            --tokenizer-type glm-bert \
            --tokenizer-model ${GLM_TOKENIZERS:-$GLM_EVAL_ROOT/../shared/tokenizers/glm}/bert-base-uncased-vocab.txt \
            --load ${CHECKPOINT_PATH}"
