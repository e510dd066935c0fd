# Any Hugging Face causal LM in a local folder (config.json, weights, tokenizer files), or a
# GGUF file inside a folder (set HF_GGUF_FILE to its name). Loaded offline (local files only).
#   HF_MODEL_PATH=/path/to/model [HF_GGUF_FILE=model.gguf] [HF_ADD_BOS=auto|yes|no] \
#   MODEL_CONFIG=configs/model_hf_local.sh bash scripts/evaluate.sh tasks/lambada
# Needs the HF extra: bash scripts/setup_venv.sh hf
MODEL_TYPE="hf-local"
MP_SIZE="${MP_SIZE:-1}"  # >1: transformers' own tensor parallelism (tp_plan), for models that have a plan
MODEL_ARGS="--backend hf --hf-model ${HF_MODEL_PATH:-/path/to/hf-model} --hf-add-bos ${HF_ADD_BOS:-auto}${HF_GGUF_FILE:+ --hf-gguf-file ${HF_GGUF_FILE}}"

prepare_model() {
    if [ -z "${HF_MODEL_PATH:-}" ]; then
        echo "error: configs/model_hf_local.sh: set HF_MODEL_PATH to a local Hugging Face model folder" >&2
        exit 2
    fi
}
