"""tfrs_kit: a complete, fast retrieval recommender toolkit on TensorFlow Recommenders.

>>> import tfrs_kit as tk
>>> tk.Tower.__name__, tk.TwoTowerRetrieval.__name__
('Tower', 'TwoTowerRetrieval')
"""

from tfrs_kit._keras import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()  # before anything imports TensorFlow

from tfrs_kit import baselines, datasets, evaluation, towers  # noqa: E402
from tfrs_kit._errors import NotFittedError  # noqa: E402
from tfrs_kit._history import HistoryBuilder  # noqa: E402
from tfrs_kit._index import Index, IndexBuilder, Recommendations, load_index  # noqa: E402
from tfrs_kit._retrieval import TwoTowerRetrieval  # noqa: E402
from tfrs_kit._version import __version__  # noqa: E402
from tfrs_kit._vocabulary import (  # noqa: E402
    Vocabularies,
    Vocabulary,
    VocabularyBuilder,
    VocabularyCounts,
)
from tfrs_kit.evaluation import Report, evaluate  # noqa: E402
from tfrs_kit.towers import Tower  # noqa: E402

__all__ = [
    "HistoryBuilder",
    "Index",
    "IndexBuilder",
    "NotFittedError",
    "Recommendations",
    "Report",
    "Tower",
    "TwoTowerRetrieval",
    "Vocabularies",
    "Vocabulary",
    "VocabularyBuilder",
    "VocabularyCounts",
    "__version__",
    "baselines",
    "datasets",
    "evaluate",
    "evaluation",
    "load_index",
    "towers",
]
