#!/usr/bin/env bash
# npm run eval:model -- [--dataset DIR] [--model PATH]  (see models/train/eval_onnx.py)
set -euo pipefail
# The project's .venv when scripts/test.sh made one (the interpreter lacked the pinned packages).
root="$(cd "$(dirname "$0")/../.." && pwd)"
PY=python3
[[ -x "$root/.venv/bin/python3" ]] && PY="$root/.venv/bin/python3"
exec "$PY" "$(dirname "$0")/eval_onnx.py" "$@"
