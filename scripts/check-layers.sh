#!/usr/bin/env bash
# The layers the core keeps (docs/store-seam.md):
# - SQL only in store/: no file under src-tauri/src outside store/ names rusqlite or calls
#   `.conn(`, `execute(`, `query_row(` or `prepare(`;
# - Tauri only in desktop/: no file under src-tauri/src outside desktop/ says `use tauri` or `tauri::`.
# Prints every offending line (file:line: text) and exits 1 when there is any; 0 otherwise.
# Comment lines (//, //!, ///) are not code and are skipped. Usage: scripts/check-layers.sh [src dir]
set -euo pipefail

src="${1:-$(cd "$(dirname "$0")/.." && pwd)/src-tauri/src}"
if [[ ! -d "$src" ]]; then
    echo "check-layers: no such directory: $src" >&2
    exit 2
fi

# file:line:text for every match of $1 (extended regex) in .rs files outside the dir $2, comments dropped.
offending() {
    local pattern="$1" allowed="$2"
    grep -rnE --include='*.rs' "$pattern" "$src" \
        | grep -v "^$src/$allowed/" \
        | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' \
        || true
}

status=0
sql=$(offending 'rusqlite|\.conn\(|[^_[:alnum:]]execute\(|query_row\(|[^_[:alnum:]]prepare\(' store)
if [[ -n "$sql" ]]; then
    echo "check-layers: SQL outside src-tauri/src/store/ (move it behind a store method):"
    echo "$sql"
    status=1
fi
tauri=$(offending '(^|[^_[:alnum:]])use tauri|(^|[^_[:alnum:]:])tauri::' desktop)
if [[ -n "$tauri" ]]; then
    echo "check-layers: Tauri outside src-tauri/src/desktop/ (the core names no Tauri type):"
    echo "$tauri"
    status=1
fi
if [[ $status -eq 0 ]]; then
    echo "check-layers: ok (SQL only in store/, Tauri only in desktop/)"
fi
exit $status
