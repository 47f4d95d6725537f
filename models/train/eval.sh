#!/usr/bin/env bash
# npm run eval:model -- [--dataset DIR] [--model PATH]  (see models/train/eval_onnx.py)
set -euo pipefail
# The project's .venv when scripts/test.sh made one (the interpreter lacked the pinned packages).
root="$(cd "$(dirname "$0")/../.." && pwd)"
PY=python3
[[ -x "$root/.venv/bin/python3" ]] && PY="$root/.venv/bin/python3"
# npm runs a script in the repository root; relative --dataset/--model/--save-embeddings mean the
# folder `npm run eval:model` was typed in, which npm passes as INIT_CWD. Only under that npm
# script: a program that runs this file itself (bench/eval-live.ts) sets its own working directory,
# and may have inherited another script's INIT_CWD.
if [[ "${npm_lifecycle_event:-}" == "eval:model" && -n "${INIT_CWD:-}" ]]; then cd "$INIT_CWD"; fi
exec "$PY" "$root/models/train/eval_onnx.py" "$@"
