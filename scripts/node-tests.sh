#!/usr/bin/env bash
# Run the node:test files (*.test.ts, through tsx) under the given folders or
# files, one file at a time (the integration tests share one Orthanc).
#
#   bash scripts/node-tests.sh test/unit [test/integration/foo.test.ts ...]
#
# Why not `node --test 'test/unit/**/*.test.ts'`: Node 20 does not expand
# globs given to --test (that came with Node 21), and the shell that npm uses
# (sh) has no `**`; an unmatched pattern is an error. So the files are listed
# here, and a folder without tests is a clean "no tests", not a failure.
#
# Human-readable output (spec reporter) goes to stdout; when NODE_TESTS_TAP is
# set, a TAP copy goes to that file so scripts/test.sh can count results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

(($# >= 1)) || { echo "usage: $0 <folder|file.test.ts>..." >&2; exit 2; }

files=()
for arg in "$@"; do
  if [[ -d "$arg" ]]; then
    while IFS= read -r f; do files+=("$f"); done < <(find "$arg" -type f -name '*.test.ts' -not -path '*/node_modules/*' | LC_ALL=C sort)
  elif [[ -f "$arg" ]]; then
    files+=("$arg")
  else
    echo "no such test file or folder: $arg" >&2
    exit 2
  fi
done

if ((${#files[@]} == 0)); then
  echo "# no test files in $*"
  [[ -n "${NODE_TESTS_TAP:-}" ]] && printf 'TAP version 13\n1..0\n# tests 0\n# pass 0\n# fail 0\n' >"$NODE_TESTS_TAP"
  exit 0
fi

reporters=(--test-reporter=spec --test-reporter-destination=stdout)
if [[ -n "${NODE_TESTS_TAP:-}" ]]; then
  reporters+=(--test-reporter=tap "--test-reporter-destination=$NODE_TESTS_TAP")
fi
exec node --import tsx --test --test-concurrency=1 "${reporters[@]}" "${files[@]}"
