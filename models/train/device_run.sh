#!/usr/bin/env bash
# One GPU session's work (see README "On a GPU machine"): every (configuration,
# fold) of CONF is one device_train.py process; PARALLEL of them share the GPU
# (one run at batch 64 leaves most of an H200 idle). Fold 5 of every
# configuration goes first (its model is the one that could ship), then folds
# 1-4 (the ones the choice is made on); FOLDS overrides the list. A job that would start with less than
# MIN_JOB_S (150) left is skipped; one cut by the deadline is marked truncated and
# left out of the choice. device_collect.py then keeps the winner's model.
# Usage (device machine, repo root):
#   bash models/train/device_run.sh OUTDIR CONF [BUDGET_S] [PARALLEL] [-- device_collect args]
set -uo pipefail
out=${1:?output dir}; conf=${2:?config file (models/train/sweeps/*.conf)}
budget=${3:-500}; parallel=${4:-8}; shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
min_job=${MIN_JOB_S:-150}; folds=${FOLDS:-5 1 2 3 4}
conf=$(realpath "$conf"); mkdir -p "$out"; out=$(realpath "$out")
cd "$(dirname "$0")" || exit 2
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$SECONDS
mapfile -t lines < <(grep -v '^\s*\(#\|$\)' "$conf")
jobs_run=0; jobs_skipped=()
for fold in $folds; do
  for line in "${lines[@]}"; do
    read -r tag args <<<"$line"
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
    left=$(( budget - (SECONDS - start) ))
    if [ "$left" -lt "$min_job" ]; then jobs_skipped+=("$tag/f$fold"); continue; fi
    # shellcheck disable=SC2086  # args is a word list by design
    python3 device_train.py --tag "$tag" $args --folds "$fold" --save-folds 5 --budget-s "$left" \
      --threads 2 --out "$out" >"$out/log-$tag-f$fold.txt" 2>&1 &
    jobs_run=$((jobs_run + 1))
  done
done
wait
echo "ran $jobs_run jobs in $((SECONDS - start)) s; skipped (no time): ${jobs_skipped[*]:-none}"
shopt -s nullglob; logs=("$out"/log-*.txt)
cat "${logs[@]}" /dev/null >"$out/log.txt"; rm -f "${logs[@]}"
grep -h "done in\|deadline\|Error\|error" "$out/log.txt" | tail -n 40
python3 device_collect.py --out "$out" "$@"
ls -la "$out"
