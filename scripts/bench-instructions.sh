#!/usr/bin/env bash
# User-space instructions a request of `serve` in one cell of the bench, counted by callgrind:
# the same figure for the same build and inputs however loaded the machine is, where CPU time
# on these shared cores moves ±20 % between rounds. For comparing builds; kernel time (≈ 45 %
# of serve's CPU on the SSE rows) is not counted.
#
# Usage: scripts/bench-instructions.sh [SERVE-BINARY] [ROW] [CONCURRENCY]
#   defaults: target/bench-release/codex-vault sse14 1 (built by `make bench`)
# Prints instructions a request (and how many requests the window held); the callgrind dump is
# left in target/bench/callgrind/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(realpath "${1:-target/bench-release/codex-vault}")
row=${2:-sse14}
conc=${3:-1}
bench=target/bench-release/bench
for f in "$bin" "$bench"; do
  [ -x "$f" ] || { echo "bench-instructions: $f missing: run make bench (or build it) first" >&2; exit 1; }
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  { echo "bench-instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }

out=target/bench/callgrind
rm -rf "$out" && mkdir -p "$out"
out=$(realpath "$out")
# Only `serve` runs under callgrind; the bench's CLI calls (accounts, endpoint info) run natively.
wrap="$out/vault"
cat > "$wrap" <<SH
#!/bin/sh
[ "\$1" = serve ] && exec valgrind --tool=callgrind --callgrind-out-file=$out/cg.%p "$bin" "\$@"
exec "$bin" "\$@"
SH
chmod 755 "$wrap"

ulimit -n "$(ulimit -Hn)"
log="$out/bench.err"
scripts/keyring-session.sh "$bench" --vault "$wrap" --only "$row" --secs 4 --warmup 1 \
  --hold-rounds 0 --out "$out/results.json" >"$out/bench.txt" 2>"$log" &
pid=$!
# A row's cells run direct first, then serve and nginx (in an order of the bench's choosing):
# counting runs from the end of the direct cell to the end of serve's, which holds serve's whole
# cell (warm-up included: its requests are counted too) and nothing else that serve does.
await() {
  until grep -qE "$1 +$row +c=$conc " "$log"; do
    kill -0 "$pid" 2>/dev/null || { echo "bench-instructions: the bench stopped early:" >&2; tail "$log" >&2; exit 1; }
    sleep 0.1
  done
}
await direct
serves=$(pgrep -f "callgrind.*serve --port") || true
for p in $serves; do callgrind_control -z "$p" >/dev/null; done
await serve
for p in $serves; do callgrind_control -d "$p" >/dev/null; done
wait "$pid"

# Several serves run (one a column spec); the cell's is the one that did the work.
best="" most=0
for f in "$out"/cg.*.1; do
  n=$(awk '/^totals:/ {print $2}' "$f")
  if [ "${n:-0}" -gt "$most" ]; then most=$n best=$f; fi
done
[ -n "$best" ] || { echo "bench-instructions: no callgrind dump" >&2; exit 1; }
# Requests in the window: calls of the request log's per-request `Trace::begin`.
python3 - "$best" "$row" "$conc" <<'PY'
import re, sys
path, row, conc = sys.argv[1:]
names, calls, total = {}, 0, 0
lines = open(path).read().split("\n")
for i, l in enumerate(lines):
    m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", l)
    if m and m.group(2):
        names[m.group(1)] = m.group(2)
    if l.startswith("cfn="):
        name = names.get(re.match(r"^cfn=\((\d+)\)", l).group(1), "")
        if name.endswith("record::Trace::begin") and lines[i + 1].startswith("calls="):
            calls += int(lines[i + 1].split()[0][len("calls="):])
    if l.startswith("totals:"):
        total = int(l.split()[1])
if not calls:
    sys.exit("bench-instructions: no request in the window")
print(f"{row} c={conc}: {total / calls:,.0f} instructions a request ({calls} requests, {path})")
PY
