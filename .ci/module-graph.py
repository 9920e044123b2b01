#!/usr/bin/env python3
"""Fails when the crate's module dependency graph has a cycle.

Reads the item graph of `cargo modules dependencies` (DOT), lifts every
`uses` edge to the modules that contain its two ends (an item's edge is an
edge from the module holding the user to the module holding the used
item), drops a module's edges to itself, and lists every strongly connected
component of more than one module, with the item edges that make it.
`owns` edges (a module holding an item or a submodule) are structure, not
dependencies, and are not counted.

Edges between a module and its own ancestors or descendants are not
counted either: a module with its submodules is one unit seen from
outside (a `mod.rs` re-exports its children's items and they use its
helpers), and `owns` already says how they nest. Edges between siblings,
cousins and unrelated modules are.

A cycle named in the allow-list file (one cycle per line: its modules,
separated by spaces, in any order; `#` starts a comment) is reported but
does not fail the check. The list names cycles that another branch is
removing; it is meant to be empty.

Usage:
    module-graph.py [--allow FILE] [--dot FILE] [--package NAME]
    module-graph.py --self-test

Without --dot it runs cargo-modules itself.
"""

import argparse
import re
import subprocess
import sys
from collections import defaultdict

NODE = re.compile(r'^\s*"([^"]+)"\s*\[label="([^"|]*)\|')
EDGE = re.compile(r'^\s*"([^"]+)"\s*->\s*"([^"]+)"\s*\[label="(\w+)"')


def parse(dot):
    """Nodes (path -> kind) and edges (from, to, label) of a DOT graph."""
    kinds, edges = {}, []
    for line in dot.splitlines():
        m = EDGE.match(line)
        if m:
            edges.append(m.groups())
            continue
        m = NODE.match(line)
        if m:
            # The label's first field is "<visibility> <kind>", e.g.
            # "pub(crate) mod" or "crate".
            kinds[m.group(1)] = m.group(2).split()[-1] if m.group(2).split() else ""
    return kinds, edges


def module_graph(kinds, edges):
    """The module-level `uses` graph: {module: {module: [(user, used)]}}."""
    parent = {}
    for src, dst, label in edges:
        if label == "owns":
            parent[dst] = src
    modules = {n for n, k in kinds.items() if k in ("mod", "crate")}

    def module_of(node):
        seen = set()
        while node not in modules and node in parent and node not in seen:
            seen.add(node)
            node = parent[node]
        if node in modules:
            return node
        # No owner recorded: the longest module path that prefixes it.
        parts = node.split("::")
        for i in range(len(parts), 0, -1):
            prefix = "::".join(parts[:i])
            if prefix in modules:
                return prefix
        return None

    graph = defaultdict(lambda: defaultdict(list))
    for src, dst, label in edges:
        if label != "uses":
            continue
        a, b = module_of(src), module_of(dst)
        if a is None or b is None or a == b or nested(a, b) or nested(b, a):
            continue
        graph[a][b].append((src, dst))
    return graph


def nested(outer, inner):
    """Whether module `inner` lies inside module `outer`."""
    return inner.startswith(outer + "::")


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan,
    iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    nodes = set(graph) | {b for a in graph for b in graph[a]}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    scc.append(n)
                    if n == node:
                        break
                if len(scc) > 1:
                    out.append(sorted(scc))
    return sorted(out)


def short(path, crate):
    return path[len(crate) + 2:] if path.startswith(crate + "::") else path


def read_allowed(path):
    allowed = []
    if path is None:
        return allowed
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].split()
                if line:
                    allowed.append(frozenset(line))
    except FileNotFoundError:
        pass
    return allowed


SELF_TEST = """
digraph {
    "c" [label="crate|c"];
    "c::a" [label="pub(crate) mod|a"];
    "c::a::f" [label="pub(crate) fn|a::f"];
    "c::a::inner" [label="mod|a::inner"];
    "c::a::inner::g" [label="fn|a::inner::g"];
    "c::b" [label="pub(crate) mod|b"];
    "c::b::T" [label="pub(crate) struct|b::T"];
    "c::b::T::new" [label="pub(crate) fn|b::T::new"];
    "c::d" [label="mod|d"];
    "c::d::h" [label="fn|d::h"];
    "c" -> "c::a" [label="owns"];
    "c" -> "c::b" [label="owns"];
    "c" -> "c::d" [label="owns"];
    "c::a" -> "c::a::f" [label="owns"];
    "c::a" -> "c::a::inner" [label="owns"];
    "c::a::inner" -> "c::a::inner::g" [label="owns"];
    "c::b" -> "c::b::T" [label="owns"];
    "c::b::T" -> "c::b::T::new" [label="owns"];
    "c::d" -> "c::d::h" [label="owns"];
    "c::a::f" -> "c::a::inner::g" [label="uses"];
    "c::a::inner::g" -> "c::a::f" [label="uses"];
    "c::a::f" -> "c::b::T" [label="uses"];
    "c::b::T::new" -> "c::a::f" [label="uses"];
    "c::a::inner::g" -> "c::d::h" [label="uses"];
    "c::d::h" -> "c::a::f" [label="uses"];
}
"""


def self_test():
    """The lifting and the cycle search on a graph whose answer is known:
    a <-> b is a cycle (b's edge comes from a method of its type); a and
    a::inner use each other (nested: not counted), and a::inner -> d -> a
    is no cycle because a's edge to a::inner is not counted."""
    kinds, edges = parse(SELF_TEST)
    graph = module_graph(kinds, edges)
    found = cycles(graph)
    assert found == [["c::a", "c::b"]], found
    assert "c::a::inner" not in graph.get("c::a", {}), "nested modules must not count"
    assert set(graph["c::a::inner"]) == {"c::d"} and set(graph["c::d"]) == {"c::a"}
    allowed = read_allowed(None)
    assert allowed == []
    print("module-graph: self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--allow", help="file naming cycles that do not fail the check")
    ap.add_argument("--dot", help="read the item graph from this file instead of running cargo-modules")
    ap.add_argument("--package", default="multiproc")
    ap.add_argument("--self-test", action="store_true", help="check the script on a known graph")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return

    if args.dot:
        with open(args.dot, encoding="utf-8") as f:
            dot = f.read()
    else:
        cmd = ["cargo", "modules", "dependencies", "-p", args.package, "--lib",
               "--no-externs", "--no-sysroot", "--all-features"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            sys.exit(f"module-graph: `{' '.join(cmd)}` failed")
        dot = run.stdout

    crate = args.package.replace("-", "_")
    kinds, edges = parse(dot)
    if not any(label == "uses" for _, _, label in edges):
        sys.exit("module-graph: the graph has no `uses` edge; cargo-modules' output format changed?")
    graph = module_graph(kinds, edges)
    allowed = read_allowed(args.allow)
    found = cycles(graph)

    failed = False
    for scc in found:
        names = [short(m, crate) for m in scc]
        ok = frozenset(names) in allowed
        failed |= not ok
        print(f"{'allowed' if ok else 'CYCLE'}: {' <-> '.join(names)}")
        members = set(scc)
        for a in scc:
            for b in sorted(graph[a]):
                if b in members:
                    uses = graph[a][b]
                    src, dst = uses[0]
                    more = f" (and {len(uses) - 1} more)" if len(uses) > 1 else ""
                    print(f"    {short(a, crate)} -> {short(b, crate)}: "
                          f"{short(src, crate)} uses {short(dst, crate)}{more}")
    for entry in allowed:
        if not any(frozenset(short(m, crate) for m in scc) == entry for scc in found):
            print(f"note: the allowed cycle {' '.join(sorted(entry))} is gone: remove it from {args.allow}")
    nmods = len({m for m, k in kinds.items() if k in ("mod", "crate")})
    if failed:
        print(f"module-graph: the module graph of {args.package} has a cycle (see above)")
        sys.exit(1)
    print(f"module-graph: {nmods} modules, no cycle outside the allow-list")


if __name__ == "__main__":
    main()
