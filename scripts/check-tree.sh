#!/usr/bin/env bash
# Structural checks `make lint` runs (issue 17): no source file of the core over 600 lines, and
# every `*.md` a source file names is a file of this repository (a reader must be able to open it).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

max=600
while IFS= read -r f; do
  n=$(wc -l <"$f")
  if (( n > max )); then
    echo "check-tree: $f has $n lines (max $max): split it at its seams" >&2
    fail=1
  fi
done < <(git ls-files 'src-tauri/src/*.rs')

tracked=$(git ls-files '*.md')
while IFS=: read -r file name; do
  [[ -z "$name" ]] && continue
  if [[ "$name" == */* ]]; then
    # A path: relative to the repository root, as every doc reference here is written.
    grep -qxF "$name" <<<"$tracked" && continue
  else
    # A bare name: the repository's root file of that name, else the one tracked file carrying it.
    grep -qxF "$name" <<<"$tracked" && continue
    (( $(grep -cE "(^|/)${name//./\\.}\$" <<<"$tracked" || true) == 1 )) && continue
  fi
  echo "check-tree: $file names $name, which is not a file of this repository" >&2
  fail=1
done < <(git grep -oE '[A-Za-z0-9_./-]+\.md\b' -- 'src-tauri/src' 'tests/src' 'src-tauri/tests' 'tests/tests' | sort -u)

exit $fail
