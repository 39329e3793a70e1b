"""The CLI package stays untied: shared helpers live in public modules (common.py,
output.py, ...), no module reaches for another's private names, no import circles, and
command modules never import each other (app.py is the one place that knows them all)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

CLI = ROOT / "llmtui" / "cli"
PKG = "llmtui.cli"


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(CLI.glob("*.py")) if p.stem != "__init__"}


def _imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(cli module imported, names taken from it, line) for every import, even lazy ones."""
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PKG:  # from llmtui.cli import gen_cmd
                out.extend((a.name, [], node.lineno) for a in node.names)
            elif node.module.startswith(PKG + "."):
                out.append((node.module[len(PKG) + 1:].split(".")[0],
                            [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith(PKG + "."):
                    out.append((a.name[len(PKG) + 1:].split(".")[0], [], node.lineno))
    return out


def _private_attrs(tree: ast.Module, modules: set[str]) -> list[tuple[str, int]]:
    """`gen_cmd._write` style reaches into a module imported as a name."""
    return [(f"{n.value.id}.{n.attr}", n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id in modules and n.attr.startswith("_")
            and not n.attr.startswith("__")]


def test_no_private_names_across_modules() -> None:
    mods = _modules()
    bad = []
    for name, tree in mods.items():
        for target, names, line in _imports(tree):
            if target != name:
                bad += [f"{name}.py:{line} imports {target}.{n}" for n in names
                        if n.startswith("_")]
        bad += [f"{name}.py:{line} uses {attr}" for attr, line in _private_attrs(tree, set(mods))
                if not attr.startswith(name + ".")]
    assert not bad, "private names used across llmtui/cli modules:\n" + "\n".join(bad)


def test_command_modules_do_not_import_each_other() -> None:
    mods = _modules()
    bad = [f"{name}.py:{line} imports {target}" for name, tree in mods.items()
           if name.endswith("_cmd") for target, _, line in _imports(tree)
           if target.endswith("_cmd") and target != name]
    assert not bad, "shared code belongs in llmtui/cli/common.py:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk meets, as a path that ends where it starts."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {name: {t for t, _, _ in _imports(tree) if t in mods and t != name}
             for name, tree in mods.items()}
    cycles = _cycles(graph)
    assert not cycles, "import circles in llmtui/cli:\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_the_checks_see_a_circle_and_a_private_name() -> None:
    """The checks themselves work: they flag what they are meant to flag."""
    tree = ast.parse("from llmtui.cli.gen_cmd import _write\n"
                     "def f():\n    from llmtui.cli import rag_cmd\n    rag_cmd._warn('x')\n")
    assert ("gen_cmd", ["_write"], 1) in _imports(tree)
    assert ("rag_cmd", [], 3) in _imports(tree)
    assert _private_attrs(tree, {"rag_cmd"}) == [("rag_cmd._warn", 4)]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
