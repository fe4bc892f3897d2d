#!/usr/bin/env python3
"""No import cycles between the core's top-level modules (issue 17): reads every `crate::<module>`
path in src-tauri/src (test modules and comments left out), builds the module graph and prints
each strongly connected set with the files that make its edges. Exit 1 when there is a cycle.

The layering it keeps, lowest first: the leaves (`error_code`, `http`, `paths`, `secret`,
`fsutil`, `failpoint`, `bus`), `account`, `store`, `vault`, `oauth`, `listeners`, `health`,
`refresh`, `codex_writeback`, `error` (`AppError`), `accounts`, `endpoint`, `config`, `runtime`,
then the faces (`cli`, `serve`, `desktop`). Usage: scripts/check-cycles.py [src dir]"""
import collections
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src-tauri", "src")
src = os.path.normpath(src)


def top_module(path):
    rel = os.path.relpath(path, src).split(os.sep)
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def code_of(text):
    # Unit-test modules may reach anything; they sit at the end of a file by convention.
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s", text)
    if cut:
        text = text[: cut.start()]
    return re.sub(r"//[^\n]*", "", text)


edges = collections.defaultdict(lambda: collections.defaultdict(set))
for d, _, files in os.walk(src):
    for f in sorted(files):
        if not f.endswith(".rs") or f == "tests.rs" or f.endswith("_tests.rs"):
            continue
        path = os.path.join(d, f)
        m = top_module(path)
        if m in ("lib", "main"):
            continue
        code = code_of(open(path, encoding="utf-8").read())
        targets = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", code))
        for g in re.finditer(r"crate::\{", code):
            i, depth, seg = g.end() - 1, 0, ""
            # Top-level entries of the group: split on commas at depth 1.
            for ch in code[i:]:
                if ch == "{":
                    depth += 1
                    if depth == 1:
                        continue
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        targets.add(seg.strip().split("::")[0].strip())
                        break
                if depth == 1 and ch == ",":
                    targets.add(seg.strip().split("::")[0].strip())
                    seg = ""
                elif depth >= 1:
                    seg += ch
        for t in targets:
            t = t.strip()
            if t and t != m and re.fullmatch(r"[a-z_][a-z0-9_]*", t):
                edges[m][t].add(os.path.relpath(path, os.path.dirname(src)))

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, {}):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(sorted(comp))


for v in sorted(edges):
    if v not in index:
        visit(v)

cycles = [c for c in sccs if len(c) > 1]
for c in cycles:
    print("check-cycles: these modules import each other in a cycle: " + ", ".join(c))
    for a in c:
        for b in c:
            if b in edges[a]:
                print(f"  {a} -> {b}: " + ", ".join(sorted(edges[a][b])))
if cycles:
    sys.exit(1)
print(f"check-cycles: ok ({len(edges)} top-level modules, no import cycle)")
