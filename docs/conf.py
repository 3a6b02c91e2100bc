"""Sphinx configuration of the tfrs_kit documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TypeVar

# Quiet TensorFlow before anything imports it (autodoc imports tfrs_kit).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # no GPU probing while building the docs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # works from a checkout without `pip install -e .`

import tfrs_kit  # noqa: E402

project = "tfrs_kit"
author = "tfrs_kit developers"
copyright = "tfrs_kit developers"  # noqa: A001
release = tfrs_kit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: ```{directive} fences, :::{note} blocks, heading anchors for #links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order; type hints go into the parameter lists.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # Keras' own docstrings are not ours to render
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
typehints_fully_qualified = False
always_document_param_types = False
typehints_document_rtype = True


def typehints_formatter(annotation: Any, config: Any) -> str | None:
    """Shows a type variable by its name (``TowerType``), not its bound spelled out."""
    if isinstance(annotation, TypeVar):
        return f"``{annotation.__name__}``"
    return None


# A function in the configuration cannot be cached between builds; that only costs a
# full rebuild, which the build does anyway in CI.
suppress_warnings = ["config.cache"]

# "any table" (DataFrame, dict of arrays, tf.data.Dataset) is shown by its name.
autodoc_type_aliases = {"TableLike": "TableLike"}

# Until evaluation/_metrics.py quotes |relevant| in average_precision_at_k's docstring
# (``|relevant|``), render it as text instead of failing on an undefined substitution.
# Public names are documented under their public path, not the private module.
add_module_names = True
python_use_unqualified_type_names = True

html_theme = "furo"
html_title = f"tfrs_kit {release}"
html_static_path: list[str] = []
pygments_style = "friendly"
pygments_dark_style = "monokai"

# Warnings are errors (`make docs` passes -W), and every cross-reference must
# resolve (nitpicky). Third-party types have no pages here (no intersphinx: the
# build runs offline), so they are listed; private names are never documented.
nitpicky = True
nitpick_ignore = [
    ("py:data", "typing.Any"),
    ("py:data", "typing.Optional"),
    ("py:data", "Ellipsis"),
    ("py:class", "TableLike"),  # the alias of "any table", shown by its name
    ("py:class", "'TableLike'"),
    ("py:class", "TypeAliasForwardRef"),  # how sphinx-autodoc-typehints renders the alias
    ("py:class", "pathlib.Path"),  # the standard library has no page here either
]
nitpick_ignore_regex = [
    (r"py:.*",
     r"(collections\.abc|typing|os|numpy|np|pandas|pd|tensorflow|tf|keras|apache_beam)\..*"),
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),  # private modules and classes (such as a base class)
]


def _public_aliases() -> dict[str, str]:
    """``tfrs_kit.evaluate`` -> ``tfrs_kit.evaluation.evaluate``: top-level exports of
    names the API reference documents under their subpackage."""
    import importlib

    aliases = {}
    for package in ("evaluation", "recipe", "towers", "datasets", "baselines", "testing"):
        module = importlib.import_module(f"tfrs_kit.{package}")
        for name in getattr(module, "__all__", ()):
            if name in tfrs_kit.__all__ and getattr(tfrs_kit, name) is getattr(module, name):
                aliases[f"tfrs_kit.{name}"] = f"tfrs_kit.{package}.{name}"
    return aliases


_ALIASES = _public_aliases()


def _resolve_public_name(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolves a reference to a public name by another of its paths: a top-level
    alias (``tfrs_kit.Recipe.fit``) or a bare top-level name (``IndexBuilder``)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    head = target.split(".", 1)[0]
    if head in tfrs_kit.__all__:
        target = f"tfrs_kit.{target}"
    for alias, path in _ALIASES.items():
        if target == alias or target.startswith(alias + "."):
            target = path + target[len(alias):]
            break
    if target == node["reftarget"]:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                             target, node, contnode)


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_public_name)
