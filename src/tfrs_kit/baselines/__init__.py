"""Classical recommenders to compare against, on NumPy and SciPy sparse matrices.

Each baseline ``fit(train, *, user_id="user_id", item_id="item_id")`` returns itself and
is a :class:`~tfrs_kit.evaluation.Recommender`: ``item_ids`` is the catalogue (items seen
in ``fit``, sorted) and ``score(user_ids)`` a float32 ``[users, items]`` array. Repeated
(user, item) pairs count once (implicit feedback). Users not seen in ``fit`` are scored
by item popularity. :class:`Popularity`'s ``fit`` also takes the ``timestamp`` column, which
it reads when counting only the latest events.

* :class:`Popularity`: the same most-popular list for everyone, over all events or only
  the latest share of them (``window``).
* :class:`ItemKNN`: item-based nearest neighbours (cosine, optional shrinkage).
* :class:`UserKNN`: user-based nearest neighbours.
* :class:`EASE`: a closed-form linear item-item autoencoder.
* :class:`RP3beta`: a random walk item → user → item with a popularity penalty.
* :class:`ImplicitALS` and :class:`BPR`: matrix factorisation by the ``implicit``
  library, an optional extra (``pip install "tfrs-kit[implicit]"``).

:func:`tune` picks a baseline's hyperparameters on the latest interactions of the
training data (never the test set) and refits it on all of them; :func:`default_grid`
is the grid it searches unless told otherwise.

The kit's own matrix factorisation is the two-tower model (``TwoTowerRetrieval``) with
id-only towers, which :func:`~tfrs_kit.evaluation.evaluate` accepts directly.

Example:
    >>> from tfrs_kit.baselines import EASE
    >>> model = EASE(l2=10.0).fit({"user_id": [1, 1, 2], "item_id": [5, 6, 5]})
    >>> model.item_ids.tolist(), model.score([2]).shape
    ([5, 6], (1, 2))
"""

from tfrs_kit.baselines._implicit import BPR, ImplicitALS
from tfrs_kit.baselines._models import EASE, ItemKNN, Popularity, RP3beta, UserKNN
from tfrs_kit.baselines._tune import TuningResult, default_grid, tune

__all__ = [
    "BPR",
    "EASE",
    "ImplicitALS",
    "ItemKNN",
    "Popularity",
    "RP3beta",
    "TuningResult",
    "UserKNN",
    "default_grid",
    "tune",
]
