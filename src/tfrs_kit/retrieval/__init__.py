"""Training: the two-tower model, its losses, its input pipeline and negative sampling.

Modules, in the order a batch flows through them:

- ``_pipeline``: tables to ``tf.data`` (tensors, shuffling, sharding);
- ``_model``: :class:`TwoTowerRetrieval` (``fit``, embeddings, ``as_recommender``);
  ``fit`` reads its log whole (``_in_memory``) or streamed from files
  (``_streamed``), with the checks and callbacks of ``_fitting``;
- ``_negatives``: negative sampling beyond the batch (random catalogue candidates);
- ``_task``: :class:`FastRetrieval`, the in-batch softmax loss;
- ``_cross_replica``: its cross-replica variant under ``tf.distribute``.

>>> from tfrs_kit.retrieval import TwoTowerRetrieval
>>> TwoTowerRetrieval.__name__
'TwoTowerRetrieval'
"""

from tfrs_kit.retrieval._model import TwoTowerRetrieval

__all__ = ["TwoTowerRetrieval"]
