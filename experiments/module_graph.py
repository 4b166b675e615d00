"""The module graph in three figures: import cycles, function-level imports, longest functions.

    python experiments/module_graph.py [--root DIR] [--top 10]

``--root`` is a checkout (default: this one), so ``git worktree add /tmp/before HEAD`` gives the
"before" figures of a refactor. Cycles are the strongly connected components (two or more
modules) of grimp's graph of ``ecgml``, which counts every import, function-level ones included.
A function-level import is an ``import ecgml…`` / ``from ecgml… import`` (or a relative import)
inside a function body. ``tests/unit/test_layers.py`` asserts on the same figures.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grimp

PACKAGE = "ecgml"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FunctionImport:
    """One import of an ecgml module inside a function body."""

    path: Path
    line: int
    module: str
    function: str


@dataclass(frozen=True)
class FunctionLength:
    path: Path
    line: int
    name: str
    lines: int


def build_graph(root: Path) -> grimp.ImportGraph:
    """grimp's import graph of ``ecgml`` as found under ``root`` (not the installed one),
    without the imports made for type checking only (as ``lint-imports`` reads it: they run
    under a type checker, never at import time)."""
    sys.path.insert(0, str(root))
    try:
        return grimp.build_graph(PACKAGE, cache_dir=None, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(root))


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Components of two or more nodes that reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        work = [(start, iter(sorted(edges[start])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                cut = stack.index(node)
                component, stack[cut:] = stack[cut:], []
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Module-level cycles: sets of modules that import each other, directly or not."""
    return strongly_connected(_edges(graph))


def _is_shim_import(importer: str, imported: str) -> bool:
    """``ecgml/<pkg>/__main__.py`` → ``ecgml.cli``: how ``python -m ecgml.<pkg>`` must work; the
    layers contract ignores it too (pyproject.toml)."""
    return importer.endswith(".__main__") and (imported + ".").startswith(PACKAGE + ".cli.")


def sibling_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Package-level cycles: siblings (a package counts with all it contains) that import
    each other, at every depth, as import-linter's ``acyclic_siblings`` contract sees them
    (package ``__main__`` shims into ``ecgml.cli`` left out, as that contract ignores them)."""
    by_parent: dict[str, dict[str, set[str]]] = {}
    for importer, imported_set in _edges(graph).items():
        for imported in imported_set:
            if _is_shim_import(importer, imported):
                continue
            a, b = importer.split("."), imported.split(".")
            common = 0
            while common < min(len(a), len(b)) and a[common] == b[common]:
                common += 1
            if common in (len(a), len(b)):  # a package and its own descendant: not siblings
                continue
            parent = ".".join(a[:common])
            child_a, child_b = ".".join(a[: common + 1]), ".".join(b[: common + 1])
            siblings = by_parent.setdefault(parent, {})
            siblings.setdefault(child_a, set()).add(child_b)
            siblings.setdefault(child_b, set())
    return sorted(c for edges in by_parent.values() for c in strongly_connected(edges))


def python_files(root: Path) -> Iterator[Path]:
    yield from sorted((root / PACKAGE).rglob("*.py"))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _ecgml_module(node: ast.AST) -> str | None:
    """The ecgml module an import statement names, or None for a third-party import."""
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "." * node.level + (node.module or "")
        names = [node.module or ""]
    elif isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        return None
    own = [n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")]
    return own[0] if own else None


def function_level_imports(root: Path) -> list[FunctionImport]:
    """Every import of an ecgml module that sits inside a function (nested ones once)."""
    found: dict[tuple[Path, int], FunctionImport] = {}
    for path in python_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in _functions(tree):
            for node in ast.walk(func):
                module = _ecgml_module(node)
                key = (path, getattr(node, "lineno", 0))
                if module is not None and key not in found:
                    found[key] = FunctionImport(path.relative_to(root), key[1], module, func.name)
    return sorted(found.values(), key=lambda f: (str(f.path), f.line))


def longest_functions(root: Path, top: int = 10) -> list[FunctionLength]:
    """The ``top`` longest functions (``def`` line to last line, decorators excluded)."""
    lengths = []
    for path in python_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in _functions(tree):
            span = (func.end_lineno or func.lineno) - func.lineno + 1
            lengths.append(FunctionLength(path.relative_to(root), func.lineno, func.name, span))
    return sorted(lengths, key=lambda f: (-f.lines, str(f.path), f.line))[:top]


def report(root: Path, top: int) -> str:
    graph = build_graph(root)
    cycles = import_cycles(graph)
    siblings = sibling_cycles(graph)
    imports = function_level_imports(root)
    longest = longest_functions(root, top)
    lines = [f"# module graph of {root}", "", f"import cycles (SCCs): {len(cycles)}"]
    lines += [f"  - {' <-> '.join(c)}" for c in cycles]
    lines += ["", f"package-level cycles (siblings, every depth): {len(siblings)}"]
    lines += [f"  - {' <-> '.join(c)}" for c in siblings]
    lines += ["", f"function-level imports of ecgml modules: {len(imports)}"]
    lines += [f"  - {i.path}:{i.line} {i.function}() imports {i.module}" for i in imports]
    lines += ["", f"{top} longest functions (lines):"]
    lines += [f"  - {f.lines:4d}  {f.path}:{f.line} {f.name}()" for f in longest]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="checkout to measure")
    parser.add_argument("--top", type=int, default=10, help="how many longest functions")
    args = parser.parse_args()
    print(report(args.root.resolve(), args.top))


if __name__ == "__main__":
    main()
