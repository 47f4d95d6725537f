#!/usr/bin/env bash
# Make room for the pack on a device call, and put things back afterwards.
# A device call copies the working tree plus `carry` paths, 64 MiB in all; the
# tracked ONNX files (~39 MB) and the pack (~59 MB) do not fit together, and
# the training run does not need the ONNX files. `hold` moves them out of the
# tree and out of the index (kept in HOLD, with their sha256); `restore` puts
# them back byte for byte and re-stages them. Run from anywhere in the repo.
# Usage: bash models/train/device_tree.sh hold|restore [HOLD_DIR]
set -euo pipefail
cmd=${1:?hold or restore}
root=$(git rev-parse --show-toplevel)
hold=${2:-$root/../.cbmir-onnx-hold}
cd "$root"
exclude=.git/info/exclude
mark='models/*.onnx  # device_tree.sh hold'
case $cmd in
hold)
  mapfile -t files < <(git ls-files 'models/*.onnx')
  [ "${#files[@]}" -gt 0 ] || { echo "no tracked models/*.onnx to hold" >&2; exit 1; }
  [ ! -e "$hold/SHA256SUMS" ] || { echo "$hold already holds files; restore first" >&2; exit 1; }
  mkdir -p "$hold"
  sha256sum "${files[@]}" >"$hold/SHA256SUMS"
  git rm -q --cached -- "${files[@]}"
  grep -qxF "$mark" "$exclude" 2>/dev/null || echo "$mark" >>"$exclude"
  for f in "${files[@]}"; do mv "$f" "$hold/"; done
  echo "held ${#files[@]} files in $hold; tree now $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes tracked"
  ;;
restore)
  [ -e "$hold/SHA256SUMS" ] || { echo "nothing held in $hold" >&2; exit 1; }
  mapfile -t files < <(awk '{print $2}' "$hold/SHA256SUMS")
  for f in "${files[@]}"; do mv "$hold/$(basename "$f")" "$f"; done
  sha256sum -c --quiet "$hold/SHA256SUMS"
  grep -vxF "$mark" "$exclude" >"$exclude.tmp" || true
  mv "$exclude.tmp" "$exclude"
  git add -- "${files[@]}"
  rm -f "$hold/SHA256SUMS"; rmdir "$hold" 2>/dev/null || true
  echo "restored; git status:"; git status --short models/ | head
  ;;
*) echo "usage: $0 hold|restore [HOLD_DIR]" >&2; exit 2 ;;
esac
