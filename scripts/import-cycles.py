#!/usr/bin/env python3
"""Import circles between a crate's modules (issue 12's proof: no module imports one that imports
it back, directly or around a longer loop).

Every `.rs` file under `<crate>/src` is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). A
reference is a `crate::...` or `super::...` path in code (in `use` lists, braces expanded, and
inline paths); it points at the longest prefix of the path that is a module file. References
between a module and its own ancestors (a `mod.rs` re-exporting a child, a child using its
parent's types) are not circles; every other reference is an edge, and any strongly connected
set of two or more modules is reported with the references that form it.

    python3 scripts/import-cycles.py [crate-dir ...]     (default: every crate of the workspace)

Exit 0 when there is none, 1 (with the circles printed) otherwise.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules(src):
    """module path (tuple) -> file"""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        out.setdefault(tuple(parts), f)
    return out


def strip(code):
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    code = re.sub(r"//[^\n]*", " ", code)
    code = re.sub(r'b?"(?:\\.|[^"\\])*"', '""', code)
    return code


def expand(prefix, body):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]"""
    body = body.strip()
    m = re.match(r"^([\w:]*?)::\{(.*)\}$", body, re.S)
    if m:
        head = prefix + m.group(1)
        out, depth, cur = [], 0, ""
        for ch in m.group(2):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                out += expand(head + "::", cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            out += expand(head + "::", cur)
        return out
    body = re.split(r"\s+as\s+", body)[0].strip()
    return [prefix + body] if body and body != "self" else [prefix.rstrip(":")]


def references(code):
    code = strip(code)
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        paths += expand("", m.group(1))
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", code)
    return [p for p in paths if p.startswith(("crate::", "super::"))]


def resolve(path, here, mods):
    parts = path.split("::")
    base = list(here)
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        while parts and parts[0] == "super":
            base, parts = base[:-1], parts[1:]
    full = base + parts
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return tuple(full[:n])
    return ()


def circles(crate):
    src = crate / "src"
    mods = modules(src)
    edges = {}
    for m, f in mods.items():
        for p in references(f.read_text()):
            t = resolve(p, m, mods)
            if t == m or t == m[: len(t)] or m == t[: len(m)]:
                continue  # itself, an ancestor or a descendant
            edges.setdefault(m, {}).setdefault(t, p)
    # Tarjan's strongly connected components
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

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
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(mods):
        if v not in index:
            visit(v)
    return sccs, edges


def name(m):
    return "::".join(m) or "crate"


def main():
    crates = [Path(a) for a in sys.argv[1:]] or sorted(p.parent for p in ROOT.glob("*/Cargo.toml"))
    found = 0
    for crate in crates:
        if not (crate / "src").is_dir():
            continue
        sccs, edges = circles(crate)
        for comp in sccs:
            found += 1
            print(f"{crate.name}: import circle: {' <-> '.join(name(m) for m in comp)}")
            for a in comp:
                for b, p in edges.get(a, {}).items():
                    if b in comp:
                        print(f"    {name(a)} uses {p}")
    if found:
        return 1
    print(f"no import circles in {', '.join(c.name for c in crates if (c / 'src').is_dir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
