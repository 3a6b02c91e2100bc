"""The package's shape: which module may import which, and functions that fit on a screen.

The layers are the map in ``docs/contributing.md``; a module imports only from its
own layer's package or from lower layers, so the data flow reads bottom-up.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "tfrs_kit"
MAX_FUNCTION_LINES = 60  # besides the docstring

# Lowest first. A module may import a module of a lower layer or of its own group.
LAYERS: list[tuple[str, ...]] = [
    ("_keras", "_version", "_errors"),
    ("_validation",),
    ("_progress", "_plugins"),
    ("data",),
    ("features",),
    ("beam",),  # the preparation of `features` on Beam; the Recipe may run it
    ("evaluation", "datasets"),
    ("baselines",),
    ("towers",),
    ("retrieval",),
    ("ranking",),
    ("index",),
    ("recipe",),
    ("serving",),  # below cli, which registers `tfrs-kit serve` from serving._cli
    ("testing", "cli", "__init__"),
]
# Without TensorFlow: evaluation and baselines score NumPy arrays.
NO_TENSORFLOW = ("evaluation", "baselines", "_validation", "_errors")


def _group(module: str) -> str:
    """'tfrs_kit.retrieval._model' -> 'retrieval'; 'tfrs_kit.data._table' -> 'data'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(group: str) -> int:
    for level, groups in enumerate(LAYERS):
        if group in groups:
            return level
    raise AssertionError(f"{group!r} is not on the layer map in tests/test_layout.py")


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC.parent).with_suffix("")
        out.append((".".join(relative.parts), path))
    return out


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "tfrs_kit":
                found.update(f"tfrs_kit.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_the_layers(module, path):
    group = _group(module)
    level = _layer(group)
    upward = []
    for imported in _imports(ast.parse(path.read_text())):
        if not imported.startswith("tfrs_kit.") or imported.startswith(f"tfrs_kit.{group}"):
            continue
        target = _group(imported)
        if _layer(target) >= level and group != "__init__":
            upward.append(imported)
    assert not upward, f"{module} (layer {level}) imports {sorted(upward)} from its layer or above"


@pytest.mark.parametrize("group", NO_TENSORFLOW)
def test_numpy_layers_do_not_import_tensorflow(group):
    paths = [p for m, p in _modules() if _group(m) == group]
    assert paths
    for path in paths:
        imported = _imports(ast.parse(path.read_text()))
        assert not any(i.split(".")[0] in ("tensorflow", "tensorflow_recommenders", "tf_keras")
                       for i in imported), f"{path.name} imports TensorFlow"


def _function_lengths(path: pathlib.Path, root: pathlib.Path = SRC) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines -= first.end_lineno - first.lineno + 1
            out.append((f"{path.relative_to(root)}:{node.lineno} {node.name}", lines))
    return out


def test_no_function_is_longer_than_a_screen():
    long = [(name, n) for _, path in _modules() for name, n in _function_lengths(path)
            if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines besides the docstring: {long}"


def test_the_checks_catch_what_they_name(tmp_path):
    body = "    x = 1\n" * (MAX_FUNCTION_LINES + 1)
    path = tmp_path / "m.py"
    docstring = '    """Doc.\n\n    More."""\n'
    path.write_text(f"def long():\n{docstring}{body}\ndef short():\n    pass\n")
    assert _function_lengths(path, tmp_path) == [
        ("m.py:1 long", MAX_FUNCTION_LINES + 2), (f"m.py:{MAX_FUNCTION_LINES + 7} short", 2),
    ]
    assert _layer("index") > _layer("retrieval") > _layer("towers") > _layer("features")
    assert _group("tfrs_kit.retrieval._model") == "retrieval"
    assert "tfrs_kit.index" in _imports(ast.parse("from tfrs_kit import index"))

MAX_FILE_LINES = 600


def _package_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The tfrs_kit modules ``path`` imports anywhere (lazily or for type checking too):
    ``from package import submodule`` counts as the submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(node.module)
    return found


def _import_graph(root: pathlib.Path = SRC) -> dict[str, set[str]]:
    paths = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in paths.items():
        parts = module.split(".")
        parents = {".".join(parts[:i]) for i in range(1, len(parts))}  # Python runs them first
        graph[module] = _package_imports(path, set(paths)) - parents - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle():
    assert _cycles(_import_graph()) == []


def test_no_source_file_holds_two_concerns():
    long = {str(path.relative_to(SRC)): n for _, path in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"source files over {MAX_FILE_LINES} lines (split them): {long}"


def test_the_cycle_check_finds_a_cycle_through_a_lazy_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import a\n")
    (package / "sub" / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from pkg.sub.a import x\n")
    (package / "c.py").write_text("import pkg.sub.a\n")
    graph = _import_graph(package)
    assert graph["pkg.sub.a"] == {"pkg.sub.b"}  # its own package's __init__ is not an edge
    assert _cycles(graph) == [["pkg.sub.a", "pkg.sub.b"]]
