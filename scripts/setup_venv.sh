#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv.
#   bash scripts/setup_venv.sh            # runtime dependencies
#   bash scripts/setup_venv.sh test       # plus the test runner
# torch is pinned to 2.13.0 through constraints.txt so the CPU wheel is used
# (any other torch requirement pulls a multi-GB CUDA build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
STAMP="$VENV/.glm-eval-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/constraints.txt" -nt "$STAMP" ]; then
    SPEC="$ROOT"
    [ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$SPEC"
    touch "$STAMP"
fi
