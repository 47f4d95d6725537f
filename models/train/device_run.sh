#!/usr/bin/env bash
# One GPU session's work (see README "On a GPU machine"): two full fine-tuning
# configurations share the GPU as separate processes, each running the folds
# 1,5,2,3,4 within BUDGET seconds; device_collect.py then keeps the model of
# the configuration that wins on the folds other than 5.
# Usage (on the device machine, from the repo root): bash models/train/device_run.sh OUTDIR [BUDGET]
set -uo pipefail
out=${1:?output dir}; budget=${2:-500}
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
common=(--out "$out" --folds 1,5,2,3,4 --save-folds 5 --budget-s "$budget")
python3 device_train.py --tag a --epochs 40 --lr 1e-4 --head-lr 1e-3 "${common[@]}" >"/tmp/log-a.txt" 2>&1 &
pa=$!
python3 device_train.py --tag b --epochs 60 --lr 1e-4 --head-lr 1e-3 "${common[@]}" >"/tmp/log-b.txt" 2>&1 &
pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
echo "exit a=$ra b=$rb"
cat /tmp/log-a.txt /tmp/log-b.txt > "$out/log.txt"; tail -n 25 /tmp/log-a.txt /tmp/log-b.txt
python3 device_collect.py --out "$out"
ls -la "$out"
