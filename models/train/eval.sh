#!/usr/bin/env bash
# npm run eval:model -- [--dataset DIR] [--model PATH]  (see models/train/eval_onnx.py)
set -euo pipefail
exec python3 "$(dirname "$0")/eval_onnx.py" "$@"
