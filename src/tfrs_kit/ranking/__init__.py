"""Ranking: the second stage of retrieve-then-rank.

Modules, in the order a batch flows through them:

- ``_sampling`` and ``_pairs``: ``fit``'s training set, the log's positives with
  hard negatives (the retriever's own top candidates) and random ones;
- ``_lists``: ``fit_lists``'s training set, the retriever's own lists, and the
  blend chosen by held-out ndcg;
- ``_model``: :class:`Ranker` (``fit``, ``fit_lists``, ``cascade``), on
  ``_batch_scoring`` (``score``, ``score_pairs``, ``score_vectors``) and
  ``_checks``;
- ``_scoring``: the serving math (history similarities, retrieval scores) that
  the cascade and ``index/`` share;
- ``_sequence``: :class:`NextItemModel`, what a user's latest items in order say
  comes next (a small self-attention model), whose scores the default ranker reads;
- ``_protocol``: ``Cascade.fit``'s split protocol (a helper retriever on each
  user's earlier rows, the ranker on the later ones); it builds Rankers, so it
  sits above ``_model``;
- ``_cascade``: :class:`Cascade`, the retriever's top candidates re-ranked, as a
  recommender :func:`tfrs_kit.evaluate` scores, trained in one call by
  :meth:`Cascade.fit`;
- ``_multitask``: :class:`Multitask`, a two-tower model trained on retrieval and
  on an explicit rating in one ``fit``.

>>> from tfrs_kit.ranking import Cascade, Ranker
>>> Ranker.__name__, Cascade.__name__
('Ranker', 'Cascade')
"""

from tfrs_kit.ranking._cascade import Cascade
from tfrs_kit.ranking._model import Ranker
from tfrs_kit.ranking._multitask import Multitask
from tfrs_kit.ranking._sequence import NextItemModel

__all__ = ["Cascade", "Multitask", "NextItemModel", "Ranker"]
