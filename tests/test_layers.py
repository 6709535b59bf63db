"""The package's layers hold: every module has a layer (``[tool.importlinter]`` in
pyproject.toml), imports only from its own layer or below, and no import circle exists."""

from __future__ import annotations

import grimp
import tomllib
from importlinter.cli import lint_imports

from tests.conftest import REPO


def _import_circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other in a circle (Tarjan's strongly connected
    components of the module-level import graph, of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_no_module_imports_from_a_layer_above_its_own():
    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True,
                        no_logo=True) == 0


def test_every_module_of_the_package_has_a_layer():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]["layers"]
    named = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    top = {f"rnnseq.{p.stem}" for p in (REPO / "rnnseq").glob("*.py") if p.stem != "__init__"}
    top |= {f"rnnseq.{p.parent.name}" for p in (REPO / "rnnseq").glob("*/__init__.py")}
    assert named == top, (f"without a layer: {sorted(top - named)}; "
                          f"not in the package: {sorted(named - top)}")


def test_every_decoding_module_has_a_layer_inside_decoding():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    inner = next(c for c in contracts["contracts"] if c.get("containers") == ["rnnseq.decoding"])
    named = {name.strip() for layer in inner["layers"] for name in layer.split("|")}
    modules = {p.stem for p in (REPO / "rnnseq" / "decoding").glob("*.py") if p.stem != "__init__"}
    assert named == modules, (sorted(modules - named), sorted(named - modules))


def test_no_modules_import_each_other_in_a_circle():
    circles = _import_circles(grimp.build_graph("rnnseq"))
    assert circles == [], circles


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _import_circles(graph) == [["pkg.a", "pkg.b"]]
