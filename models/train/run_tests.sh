#!/usr/bin/env bash
# Run the models/train pytest suite (CPU). Exit 0 only if tests ran and passed;
# "no tests collected" (pytest exit 5) is a failure, not a silent pass.
set -uo pipefail
cd "$(dirname "$0")"
# The project's .venv when scripts/test.sh made one (the interpreter lacked the pinned packages).
PY=python3
[[ -x ../../.venv/bin/python3 ]] && PY=../../.venv/bin/python3
"$PY" -c "import torch, onnx, onnxruntime, numpy, PIL, pytest" 2>/dev/null || {
  echo "models/train: python deps missing: python3 -m pip install -c models/train/constraints.txt -r models/train/requirements.txt" >&2; exit 2; }
"$PY" -m pytest tests -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "models/train: no tests collected" >&2; exit 1; fi
exit "$rc"
