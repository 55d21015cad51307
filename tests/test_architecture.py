"""The layer rule (docs/architecture.md "Layers"), checked on the source with ``ast``.

Every import in ``ddecs_search/`` counts: module level, inside functions and under ``TYPE_CHECKING``.
Nodes are the subpackages (``config``, ``search`` ...) and the top-level modules (``evaluation``,
``errors``, ``_atomic`` ...). The test fails on

- a cycle between nodes (an edge ``a -> b`` means some module of ``a`` imports some module of ``b``);
- an import into another package's private module: ``ddecs_search.x._y`` may be imported only from
  inside ``ddecs_search.x`` (``ddecs_search._atomic`` only from inside ``ddecs_search``). Benchmarks
  count as outside the package; tests may import private helpers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ddecs_search"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    rel = root.joinpath(*name.split("."))
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def _imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``path``, relative ones resolved."""
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if _is_module(sub, root) else target


def _node(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else PACKAGE


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``a.b._c.d`` -> ``a.b``), or None if public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _sources(folder: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / folder).rglob("*.py"))


def subpackage_edges(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """``(from_node, to_node) -> ["module:line imported", ...]`` over the whole package."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _sources(PACKAGE, root):
        src = _node(_module_name(path, root))
        for line, target in _imports(path, root):
            dst = _node(target)
            # the root package's __init__ re-exports; every node may use errors/_imports etc.
            if dst is None or src == dst or dst == PACKAGE:
                continue
            where = edges.setdefault((src, dst), [])
            if (site := f"{path.relative_to(root)}:{line} {target}") not in where:
                where.append(site)
    return edges


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_violations(root: Path = ROOT) -> list[str]:
    """Imports (package and benchmarks) into a private module of a package the importer is not inside."""
    bad = []
    for folder in (PACKAGE, "benchmarks"):
        for path in _sources(folder, root):
            importer = _module_name(path, root)
            for line, target in _imports(path, root):
                owner = _private_owner(target)
                if owner is None or _node(target) is None:
                    continue
                if not (importer == owner or importer.startswith(owner + ".")):
                    bad.append(f"{path.relative_to(root)}:{line} imports {target} (private to {owner})")
    return bad


def layers(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Nodes grouped bottom-up: layer 0 imports nothing, layer n only imports layers below n."""
    nodes = {n for e in edges for n in e}
    placed: dict[str, int] = {}
    while len(placed) < len(nodes):
        ready = [n for n in sorted(nodes - set(placed)) if all(b in placed for a, b in edges if a == n)]
        if not ready:  # a cycle: the remaining nodes cannot be layered
            return [sorted(nodes - set(placed))]
        for n in ready:
            placed[n] = 1 + max((placed[b] for a, b in edges if a == n), default=-1)
    return [sorted(n for n, k in placed.items() if k == level) for level in range(max(placed.values()) + 1)]


def format_edges(edges: dict[tuple[str, str], list[str]]) -> str:
    return "\n".join(f"{a} -> {b}  ({len(w)} imports)" for (a, b), w in sorted(edges.items()))


# Back-edges that issue 12 item 3 removes in another change (``config`` becomes a leaf: validation
# against the model/data/policy registries moves above those packages). They are the only cycle left;
# each must still exist, so this set shrinks to empty as they go (delete an entry when its edge is gone).
PENDING_BACK_EDGES: set[tuple[str, str]] = set()  # config is a leaf: ddecs_search.spaces checks registries


def test_no_cycle_between_subpackages():
    edges = subpackage_edges()
    print("subpackage edges:\n" + format_edges(edges))
    stale = PENDING_BACK_EDGES - set(edges)
    assert not stale, f"these back-edges are gone: remove them from PENDING_BACK_EDGES: {sorted(stale)}"
    kept = set(edges) - PENDING_BACK_EDGES
    cycles = _cycles(kept)
    detail = []
    for component in cycles:
        members = set(component)
        for (a, b), where in sorted(edges.items()):
            if a in members and b in members and (a, b) in kept:
                detail.append(f"  {a} -> {b}: " + "; ".join(where))
    assert not cycles, f"import cycles between subpackages {cycles}:\n" + "\n".join(detail)
    print("layers, bottom-up:\n" + "\n".join(f"{k}: {' '.join(ns)}" for k, ns in enumerate(layers(kept))))


def test_no_import_into_another_packages_private_module():
    bad = private_violations()
    assert not bad, (
        "imports into another package's private module (export it from the package):\n" + "\n".join(bad)
    )


def missing_modules(root: Path = ROOT) -> list[str]:
    """Imports of ``ddecs_search.*`` modules that do not exist (e.g. left behind by a rename)."""
    missing = []
    for folder in (PACKAGE, "benchmarks", "tests"):
        for path in _sources(folder, root):
            for line, target in _imports(path, root):
                if _node(target) is not None and not _is_module(target, root):
                    missing.append(f"{path.relative_to(root)}:{line} imports {target}, which does not exist")
    return missing


def test_every_imported_package_module_exists():
    """A function-level import of a moved module fails only when that code runs; this finds it now."""
    bad = missing_modules()
    assert not bad, "\n".join(bad)


def test_the_checker_finds_function_level_relative_and_private_imports_and_cycles(tmp_path):
    """The checker itself, on a made-up package: each kind of finding is found."""
    top = tmp_path / PACKAGE
    for sub in ("alpha", "beta"):
        (top / sub).mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    (top / "__init__.py").write_text("")
    (top / "alpha" / "__init__.py").write_text("from . import _inner\n")
    (top / "alpha" / "_inner.py").write_text("def f():\n    from ddecs_search.beta._hidden import g\n")
    (top / "beta" / "__init__.py").write_text("from ddecs_search.alpha import _inner\n")
    (top / "beta" / "_hidden.py").write_text("")
    (tmp_path / "benchmarks" / "b.py").write_text("from ddecs_search.alpha import _inner\n")
    assert {t for _, t in _imports(top / "alpha" / "__init__.py", tmp_path)} == {"ddecs_search.alpha._inner"}
    assert {t for _, t in _imports(top / "alpha" / "_inner.py", tmp_path)} == {"ddecs_search.beta._hidden"}
    edges = subpackage_edges(tmp_path)
    assert set(edges) == {("alpha", "beta"), ("beta", "alpha")}
    assert _cycles(set(edges)) == [["alpha", "beta"]]
    assert layers({("alpha", "beta")}) == [["beta"], ["alpha"]]
    (top / "beta" / "_gone.py").write_text("def g():\n    from ddecs_search.beta._moved import x\n")
    assert [m.split(":")[0] for m in missing_modules(tmp_path)] == ["ddecs_search/beta/_gone.py"]
    assert sorted(v.split(":")[0] for v in private_violations(tmp_path)) == [
        "benchmarks/b.py",
        "ddecs_search/alpha/_inner.py",
        "ddecs_search/beta/__init__.py",
    ]
