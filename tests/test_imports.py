"""The library's import graph, read from the source (every import statement, also those inside
functions): no cycle between its modules, no private name imported from another module, and
core at the bottom (it imports nothing from the library)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "retrieval_lib"


def imports_of(path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of a library module in
    the file, resolved to module names relative to the package ("core", "train", ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("retrieval_lib"):
                    continue
                module = (node.module or "").removeprefix("retrieval_lib").lstrip(".")
            elif node.level == 1:
                module = node.module or ""
            else:                         # pragma: no cover - the package is flat
                raise AssertionError(f"{path.name}:{node.lineno}: relative import above the package")
            for alias in node.names:
                if module == "":          # from . import x: x is a module (or __init__'s name)
                    target = alias.name if (PACKAGE / f"{alias.name}.py").exists() else "__init__"
                    out.append((target, None if target == alias.name else alias.name, node.lineno))
                else:
                    out.append((module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("retrieval_lib."):
                    out.append((alias.name.split(".", 1)[1], None, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in sorted(PACKAGE.glob("*.py")):
        edges[path.stem] = {m for m, _, _ in imports_of(path) if m != path.stem}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a list of nodes, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_parser_sees_function_level_and_absolute_imports(tmp_path, monkeypatch):
    mod = tmp_path / "x.py"
    mod.write_text("import os\nfrom .core import a\n\ndef f():\n    from .train import _hidden\n"
                   "    import retrieval_lib.data\n    from retrieval_lib.metrics import score\n")
    found = imports_of(mod)
    assert ("core", "a", 2) in found and ("train", "_hidden", 5) in found
    assert ("data", None, 6) in found and ("metrics", "score", 7) in found


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_crosses_modules():
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        for module, name, line in imports_of(path):
            if name and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{path.name}:{line} imports {name} from {module}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_core_is_the_foundation():
    edges = graph()
    assert edges["core"] == set(), f"core imports {edges['core']}"
    # everything that shares names, folders, hashes, atomic writes or provenance stands on core
    for module in ("text", "data", "clotho", "archive", "sources", "pipeline", "audio", "folders",
                   "indexes", "audiocaps"):
        assert "core" in edges[module], f"{module} does not use core"


def string_constants(path: Path) -> set[str]:
    """Every string literal of a module except docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for holder in ast.walk(tree):
        if isinstance(holder, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            body = getattr(holder, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docs}


@pytest.mark.parametrize("value", ["sentence-transformers/all-mpnet-base-v2",
                                   "sentence-transformers/all-MiniLM-L6-v2", "passt-10s",
                                   "RETRIEVAL_LIB_CACHE", "RETRIEVAL_LIB_CLOTHO",
                                   "RETRIEVAL_LIB_ZENODO_URL", "RETRIEVAL_LIB_CLOTHO_CHECKSUMS",
                                   "offline"])
def test_each_default_and_alias_is_written_once(value):
    """The default models, the environment variables and the alias "offline" are literals of
    core.py only; every other module imports them."""
    files = sorted(p.name for p in PACKAGE.glob("*.py") if value in string_constants(p))
    assert files == ["core.py"], f"{value!r} is written in {files}"
