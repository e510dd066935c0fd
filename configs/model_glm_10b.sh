# GLM-10B (model_blocklm_10B.sh): the original GLM architecture (pre-LN, learned position + block position
# embeddings, GELU MLP of width 4 x hidden, output tied to the word embeddings): 48 layers,
# hidden 4096, 64 heads, 1024 positions, vocabulary 50304 rows (the tokenizer's ids padded to a
# multiple of 128, as THUDM/GLM saves the embedding), tokenizer glm-10b-english.
# CHECKPOINT_PATH: THUDM/GLM's released folder (glm-10b-1024: latest_checkpointed_iteration.txt +
# <iter>/mp_rank_00_model_states.pt) or a download of the Hub repo THUDM/glm-10b (config.json + pytorch_model.bin; read weights-only, its remote code is never run).
# The tokenizer files are in ../shared/tokenizers/glm (GLM_TOKENIZERS to point elsewhere).
# No weights are shipped or downloaded: the shape and tokenizer here are tested on a tiny model
# of the same architecture (configs/model_glm_original_tiny.sh), not on these weights.
GLM_EVAL_ROOT="${GLM_EVAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MODEL_TYPE="glm-10b"
CHECKPOINT_PATH="${CHECKPOINT_PATH:-/path/to/glm-10b-1024}"
MP_SIZE="${MP_SIZE:-1}"
MODEL_ARGS="--architecture glm \
            --model-parallel-size ${MP_SIZE} \
            --num-layers 48 \
            --hidden-size 4096 \
            --num-attention-heads 64 \
            --max-position-embeddings 1024 \
            --vocab-size 50304 \
            --tokenizer-type glm-10b-english \
            --tokenizer-model ${GLM_TOKENIZERS:-$GLM_EVAL_ROOT/../shared/tokenizers/glm} \
            --load ${CHECKPOINT_PATH}"
