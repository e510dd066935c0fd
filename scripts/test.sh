#!/usr/bin/env bash
# Install into .venv (with the test extra) and run the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_venv.sh" test
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
