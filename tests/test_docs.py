"""The documentation covers the public API, and its tutorials are the tested examples.

The fast checks parse the sources under ``docs/`` (no Sphinx build): every name in
the ``__all__`` of ``tfrs_kit`` and of its public subpackages has a docstring and an
entry in the API reference, every entry names something that exists, and every
tutorial script in ``examples/`` is included by a page. The slow check runs the
whole Sphinx build with warnings as errors, as ``make docs`` does.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

PUBLIC_MODULES = [
    name
    for name in (
        "tfrs_kit",
        "tfrs_kit.data",
        "tfrs_kit.features",
        "tfrs_kit.towers",
        "tfrs_kit.datasets",
        "tfrs_kit.evaluation",
        "tfrs_kit.recipe",
        "tfrs_kit.baselines",
        "tfrs_kit.testing",
        "tfrs_kit.beam",
        "tfrs_kit.serving",
    )
    # tfrs_kit.beam needs the beam extra.
    if name != "tfrs_kit.beam" or importlib.util.find_spec("apache_beam") is not None
]

# Directives that give an object its own entry (reST ``.. name::`` or MyST ```{name}).
ENTRY_DIRECTIVES = {
    "automodule", "module", "autoclass", "class", "autoexception", "exception",
    "autofunction", "function", "autodecorator", "decorator", "autodata", "data",
}  # fmt: skip
_RST = re.compile(r"^(?P<indent>\s*)\.\.\s+(?:py:)?(?P<directive>[a-z]+)::\s*(?P<arg>\S*)")
_MYST = re.compile(
    r"^(?P<indent>\s*)(?:`{3,}|:{3,})\{(?:py:)?(?P<directive>[a-z]+)\}\s*(?P<arg>\S*)"
)


def _resolve(path: str) -> Any:
    """The object at a dotted path (module attributes included); KeyError if none."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            break
        return obj
    raise KeyError(path)


def _entries() -> list[tuple[str, str, str, bool, str]]:
    """(full name, directive, where, has a body, raw argument) for each API entry."""
    found = []
    for source in sorted([*DOCS.rglob("*.rst"), *DOCS.rglob("*.md")]):
        if "_build" in source.parts:
            continue
        lines = source.read_text(encoding="utf-8").splitlines()
        current = None
        for number, line in enumerate(lines):
            match = _RST.match(line) or _MYST.match(line)
            if not match:
                continue
            directive, arg = match["directive"], match["arg"]
            if directive in ("currentmodule", "module", "automodule"):
                current = arg if arg != "None" else None
            if directive not in ENTRY_DIRECTIVES or not arg:
                continue
            full = arg
            if current and directive not in ("module", "automodule"):
                try:
                    _resolve(arg)
                    if not arg.startswith("tfrs_kit"):
                        raise KeyError(arg)
                except KeyError:
                    full = f"{current}.{arg}"
            body = _body(lines, number, len(match["indent"]))
            found.append((full, directive, f"{source.relative_to(ROOT)}:{number + 1}", body, arg))
    return found


def _body(lines: list[str], start: int, indent: int) -> bool:
    """Whether a directive has text content (not only options such as ``:type:``)."""
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent or line.lstrip().startswith("```"):
            return False
        if not line.lstrip().startswith(":"):
            return True
    return False


def _public_names() -> list[tuple[str, str, Any]]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            names.append((module_name, name, getattr(module, name)))
    return names


def _aliases(obj: Any, names: list[tuple[str, str, Any]]) -> set[str]:
    """Every public path of ``obj``: ``tfrs_kit.Report`` is ``tfrs_kit.evaluation.Report``."""
    paths = {f"{module}.{name}" for module, name, other in names if other is obj}
    if isinstance(obj, ModuleType):
        paths.add(obj.__name__)
    return paths


def _has_own_docstring(obj: Any) -> bool:
    # obj.__doc__, not inspect.getdoc: a class must not pass on its base class's docstring.
    doc = obj.__doc__ if (inspect.isclass(obj) or isinstance(obj, ModuleType)) else (
        inspect.getdoc(obj))
    return bool(doc and doc.strip())


def _is_data(obj: Any) -> bool:
    if typing.get_origin(obj) is not None:  # a type alias such as TableLike (a Union)
        return True
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, ModuleType)
                or callable(obj))


def test_public_modules_are_found():
    assert "tfrs_kit" in PUBLIC_MODULES and len(PUBLIC_MODULES) >= 5


def test_every_public_name_has_a_docstring():
    missing = [f"{module}.{name}" for module, name, obj in _public_names()
               if not _is_data(obj) and not _has_own_docstring(obj)]
    assert not missing, f"Public names without a docstring: {missing}. Write one (Google style)."


def test_every_public_name_has_an_api_reference_entry():
    names = _public_names()
    documented = {full for full, *_ in _entries()}
    missing = [f"{module}.{name}" for module, name, obj in names
               if not _aliases(obj, names) & documented]
    assert not missing, (
        f"Public names missing from the API reference: {missing}. Add an entry such as "
        "`.. autofunction:: name` (or autoclass, autoexception, py:data) to the page of "
        "its module under docs/api/."
    )


def test_public_constants_are_described():
    names = _public_names()
    data_paths = {path for _, _, obj in names if _is_data(obj) for path in _aliases(obj, names)}
    undescribed = [f"{full} ({where})" for full, directive, where, body, _ in _entries()
                   if full in data_paths and directive == "data" and not body]
    assert not undescribed, f"py:data entries need a description: {undescribed}"


def test_api_reference_names_exist():
    stale = []
    for full, _, where, _, _ in _entries():
        try:
            _resolve(full)
        except KeyError:
            stale.append(f"{full} ({where})")
    assert not stale, f"The API reference documents names that do not exist: {stale}"


def test_each_public_name_is_documented_once():
    # Sphinx warns (and -W fails) on duplicate object descriptions; catch it early.
    seen: dict[str, str] = {}
    duplicates = []
    for full, directive, where, _, _ in _entries():
        if directive in ("module", "automodule"):
            continue
        if full in seen:
            duplicates.append(f"{full} ({seen[full]} and {where})")
        seen[full] = where
    assert not duplicates, f"Documented twice: {duplicates}"


def test_every_example_is_included_by_a_page():
    included = set()
    for page in DOCS.rglob("*.md"):
        for match in re.finditer(r"\{literalinclude\}\s+(\S+)", page.read_text(encoding="utf-8")):
            path = (page.parent / match[1]).resolve()
            assert path.is_file(), f"{page.relative_to(ROOT)} includes a missing file {match[1]}"
            included.add(path)
    scripts = {path.resolve() for path in EXAMPLES.glob("*.py")}
    assert scripts, "no tutorial scripts in examples/"
    assert not scripts - included, (
        f"Examples no docs page includes: {sorted(p.name for p in scripts - included)}"
    )


def _toctree_entries(page: Path) -> set[Path]:
    entries, inside = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if re.match(r"^(`{3,}\{toctree\}|\.\. toctree::)", stripped):
            inside = True
        elif inside and (stripped.startswith("```") or (page.suffix == ".rst" and line
                                                          and not line[0].isspace())):
            inside = False
        elif inside and stripped and not stripped.startswith(":"):
            entries.add((page.parent / stripped).resolve())
    return entries


def test_every_page_is_in_a_toctree():
    # Sphinx warns (and -W fails) on a page no toctree lists, such as a new guide.
    pages = [p for p in [*DOCS.rglob("*.md"), *DOCS.rglob("*.rst")] if "_build" not in p.parts]
    listed = set().union(*(_toctree_entries(page) for page in pages))
    orphans = [str(p.relative_to(ROOT)) for p in pages
               if p.with_suffix("").resolve() not in listed and p != DOCS / "index.md"]
    assert not orphans, f"Pages in no toctree (add them to docs/index.md): {orphans}"


def _tested_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page that follow a ``% tested:`` comment line."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("% tested:"):
            continue
        start = next(i for i in range(number + 1, len(lines)) if lines[i].strip())
        assert lines[start].strip() == "```python", f"{page.name}:{start + 1} is not a block"
        end = lines.index("```", start + 1)
        blocks.append("\n".join(lines[start + 1 : end]))
    return blocks


def _quickstart_log(n: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small log shaped like the README quickstart's MovieLens: string ids that are
    numbers ("1", "50"), the item id in a column named ``movie_id``."""
    import tfrs_kit as tk

    data = tk.datasets.synthetic(n, seed=0)
    log = data.interactions
    log = log.assign(user_id=log["user_id"].str[1:], movie_id=log["item_id"].str[1:])
    items = pd.DataFrame({"movie_id": data.items["item_id"].str[1:]})
    return log[["user_id", "movie_id", "timestamp"]], items


@pytest.mark.parametrize("query_features", [["user_id", "history"], ["user_id"]])
def test_the_serving_page_runs_verbatim_on_the_quickstart_index(query_features, tmp_path,
                                                                fresh_python):
    """docs/serving.md's TensorFlow-only calls (history padded with "") answer as the
    Python API does, on an index shaped like the README quickstart's: string ids, the
    item id in ``movie_id``, a query tower with a history or without one (the Recipe
    chooses)."""
    import json

    import tfrs_kit as tk

    blocks = _tested_blocks(DOCS / "serving.md")
    assert blocks, "docs/serving.md has no block marked '% tested:'"
    train, items = _quickstart_log()
    history = tk.HistoryBuilder(item_id="movie_id")
    rows = history.transform(train)
    vocabs = tk.VocabularyBuilder().fit(rows, features={
        "user_id": "categorical", "movie_id": "categorical", "history": "multi"})
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=query_features, output_dim=16),
                                 tk.Tower(vocabs, features=["movie_id"], output_dim=16))
    model.fit(rows, epochs=1, seed=0, verbose=0)
    tk.IndexBuilder(k_max=100).build(model, items).save(tmp_path / "movielens_index")
    code = ("import sys, json\nsys.modules['tfrs_kit'] = None  # TensorFlow alone\n"
            + "\n".join(blocks)
            + "\nprint('RESULT', json.dumps({'specs': sorted(specs), "
              "'ids': out['ids'].numpy().astype(str).tolist()}))\n")
    result = fresh_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert served["specs"] == sorted(query_features)
    seen = [["50", "12", "33"], ["1"]]
    queries = {"user_id": ["1", "2"], "history": seen}
    expected = tk.load_index(tmp_path / "movielens_index").recommend(
        {name: queries[name] for name in query_features}, k=5, exclude=seen).ids
    assert served["ids"] == expected.astype(str).tolist()
    assert not set(served["ids"][0]) & set(seen[0])
