"""Features counted from a log: vocabularies and histories.

- ``_vocabulary``: :class:`~tfrs_kit.Vocabulary`, :class:`~tfrs_kit.Vocabularies`,
  :class:`~tfrs_kit.VocabularyBuilder` (mergeable counts, saved as JSON);
- ``_history``: :class:`~tfrs_kit.HistoryBuilder` (each event's preceding items, each
  user's latest items);
- ``_prepare`` (with ``_prepare_log``): :func:`prepare`, a raw log on disk made into
  vocabularies, training shards with histories, a validation shard and a search
  sample, out of core and resumable (:class:`Prepared` names what it wrote).

The public names are re-exported at the top level (``tk.VocabularyBuilder``), except
:func:`prepare` and :class:`Prepared`, used as ``tfrs_kit.features.prepare`` for now.
"""

from tfrs_kit.features._history import HistoryBuilder
from tfrs_kit.features._prepare import Prepared, prepare
from tfrs_kit.features._vocabulary import (
    Vocabularies,
    Vocabulary,
    VocabularyBuilder,
    VocabularyCounts,
)

__all__ = ["HistoryBuilder", "Prepared", "Vocabularies", "Vocabulary", "VocabularyBuilder",
           "VocabularyCounts", "prepare"]
