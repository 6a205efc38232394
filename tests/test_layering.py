"""Imports point backwards along the data flow: io/structures/ops -> data, codecs -> assembly ->
detection -> engine -> the command line. A module importing from a later stage fails here."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "maskrep"

#: stage of each top-level part of the package (lower = earlier)
STAGES = {
    "_config": 0, "_kernels": 0, "_array": 0, "_io": 0, "_plugins": 0, "distributed": 0,
    "ops": 1, "structures": 1,
    "data": 2, "codecs": 2,
    "assembly": 3,
    "detection": 4,
    "engine": 5,
    "viz": 0,  # pictures: imports nothing of maskrep, so any stage may draw
    "demo": 6, "integrations": 6, "cli": 6, "cli_codecs": 6, "cli_detection": 6, "testing": 6, "__main__": 7,
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _target(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` names, relative imports resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _import_nodes(path: Path, module: str):
    """(node, target module) of every maskrep import in the file, at the top or in a function."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _target(node, package)
            if target.startswith("maskrep"):
                yield node, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("maskrep"):
                    yield node, alias.name


def _imports(path: Path, module: str):
    for node, target in _import_nodes(path, module):
        yield node.lineno, target


def test_every_part_has_a_stage():
    parts = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts <= set(STAGES), f"give these a stage: {sorted(parts - set(STAGES))}"


def test_imports_point_backwards():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if module == "maskrep":
            continue
        own = STAGES[_part(module)]
        for line, target in _imports(path, module):
            if target == "maskrep":
                continue
            if STAGES[_part(target)] > own:
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def _module_graph() -> dict[str, set[str]]:
    """module -> the maskrep modules it imports, at the top or inside a function alike. ``from P import
    name`` counts as an import of the submodule P.name when there is one, else of P."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        files[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    graph = {}
    for module, path in files.items():
        edges = set()
        for node, target in _import_nodes(path, module):
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            subs = [f"{target}.{name}" for name in names if f"{target}.{name}" in files]
            edges.update(subs)
            if len(subs) < len(names) or not names:
                edges.add(target)
        graph[module] = {e for e in edges if e in files and e != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_lazy_imports_counted():
    cycles = _cycles(_module_graph())
    assert not cycles, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)
