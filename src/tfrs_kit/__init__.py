"""tfrs_kit: a complete, fast retrieval recommender toolkit on TensorFlow Recommenders.

>>> import tfrs_kit as tk
>>> tk.Tower.__name__, tk.TwoTowerRetrieval.__name__
('Tower', 'TwoTowerRetrieval')
"""

from tfrs_kit._keras import ensure_legacy_keras as _ensure_legacy_keras
from tfrs_kit._keras import quiet_tensorflow_startup as _quiet_tensorflow_startup

_ensure_legacy_keras()  # before anything imports TensorFlow
_quiet_tensorflow_startup()

import importlib as _importlib  # noqa: E402
from typing import TYPE_CHECKING as _TYPE_CHECKING  # noqa: E402

from tfrs_kit import data, features, towers  # noqa: E402
from tfrs_kit._errors import NotFittedError  # noqa: E402
from tfrs_kit._version import __version__  # noqa: E402
from tfrs_kit.data import Schema  # noqa: E402
from tfrs_kit.features import (  # noqa: E402
    HistoryBuilder,
    Vocabularies,
    Vocabulary,
    VocabularyBuilder,
    VocabularyCounts,
)
from tfrs_kit.index import Index, IndexBuilder, Recommendations, load_index  # noqa: E402
from tfrs_kit.ranking import Cascade, Ranker  # noqa: E402
from tfrs_kit.retrieval import TwoTowerRetrieval  # noqa: E402
from tfrs_kit.towers import Tower  # noqa: E402

if _TYPE_CHECKING:
    from tfrs_kit import baselines, datasets, evaluation, recipe, testing
    from tfrs_kit.evaluation import Report, evaluate
    from tfrs_kit.recipe import Recipe, load

# Imported on first use: they pull in SciPy and friends, which serving never needs.
_LAZY = {
    "baselines": ("tfrs_kit.baselines", None),
    "datasets": ("tfrs_kit.datasets", None),
    "evaluation": ("tfrs_kit.evaluation", None),
    "evaluate": ("tfrs_kit.evaluation", "evaluate"),
    "Report": ("tfrs_kit.evaluation", "Report"),
    "Recipe": ("tfrs_kit.recipe", "Recipe"),
    "load": ("tfrs_kit.recipe", "load"),
    "recipe": ("tfrs_kit.recipe", None),
    "testing": ("tfrs_kit.testing", None),
    # Needs the `beam` extra, so it stays out of __all__: `from tfrs_kit import *`
    # must work without Apache Beam installed.
    "beam": ("tfrs_kit.beam", None),
    # The HTTP server: its app() needs the `serve` extra, so it stays out of __all__ too.
    "serving": ("tfrs_kit.serving", None),
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name not in _LAZY:
        raise AttributeError(f"module 'tfrs_kit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = _importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Cascade",
    "HistoryBuilder",
    "Index",
    "IndexBuilder",
    "NotFittedError",
    "Ranker",
    "Recipe",
    "Recommendations",
    "Report",
    "Schema",
    "Tower",
    "TwoTowerRetrieval",
    "Vocabularies",
    "Vocabulary",
    "VocabularyBuilder",
    "VocabularyCounts",
    "__version__",
    "baselines",
    "data",
    "datasets",
    "evaluate",
    "evaluation",
    "features",
    "load",
    "load_index",
    "recipe",
    "testing",
    "towers",
]
