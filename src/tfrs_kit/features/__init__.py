"""Features counted from a log: vocabularies and histories.

- ``_vocabulary``: :class:`~tfrs_kit.Vocabulary`, :class:`~tfrs_kit.Vocabularies`,
  :class:`~tfrs_kit.VocabularyBuilder` (mergeable counts, saved as JSON);
- ``_history``: :class:`~tfrs_kit.HistoryBuilder` (each event's preceding items, each
  user's latest items).

The public names are re-exported at the top level (``tk.VocabularyBuilder``).
"""

from tfrs_kit.features._history import HistoryBuilder
from tfrs_kit.features._vocabulary import (
    Vocabularies,
    Vocabulary,
    VocabularyBuilder,
    VocabularyCounts,
)

__all__ = ["HistoryBuilder", "Vocabularies", "Vocabulary", "VocabularyBuilder",
           "VocabularyCounts"]
