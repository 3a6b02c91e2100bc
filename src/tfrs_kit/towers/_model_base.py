"""What every model of two towers shares: the retriever's and the ranker's base and checks.

Both :class:`~tfrs_kit.TwoTowerRetrieval` (``retrieval/``) and
:class:`~tfrs_kit.Ranker` (``ranking/``) build on this module, one layer below
both, so neither imports the other's private modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int, check_number, check_verbose, renamed_argument
from tfrs_kit.data._table import Table, TableLike, last_rows, select, to_table
from tfrs_kit.towers._tower import Tower

__all__ = ["LossLogs", "TwoTowerModel", "check_fit_settings", "check_tower", "item_id_of",
           "keras_verbosity", "rows_by_key", "user_positions"]

_Model = TypeVar("_Model", bound="TwoTowerModel")


class LossLogs(tfrs.Model):
    """A TFRS model whose ``fit`` lines show ``loss`` alone when nothing is regularised.

    TFRS logs ``regularization_loss`` (0) and ``total_loss`` (the loss again) at
    every step; the towers are built by the time a step returns, so
    ``self.losses`` holds their regularisers, if any.
    """

    def train_step(self, inputs: Any) -> dict[str, Any]:
        return self._loss_only(super().train_step(inputs))

    def test_step(self, inputs: Any) -> dict[str, Any]:
        return self._loss_only(super().test_step(inputs))

    def _loss_only(self, logs: dict[str, Any]) -> dict[str, Any]:
        if not self.losses:
            logs.pop("regularization_loss", None)
            logs.pop("total_loss", None)
        return logs


class TwoTowerModel(LossLogs):
    """A model of a query tower and a candidate tower, rebuilt from its Keras config.

    The subclass stores ``query_tower``, ``candidate_tower`` and ``item_id``, and
    its ``get_config`` holds every constructor argument, the towers as Keras
    configs.
    """

    def get_build_config(self) -> None:
        # As the towers': Keras would build a deserialised model on float
        # placeholders, which string and list features reject; it builds on first call.
        return None

    @classmethod
    def from_config(cls: type[_Model], config: Mapping[str, Any],
                    custom_objects: Mapping[str, Any] | None = None) -> _Model:
        """A new, untrained model from :meth:`get_config`'s output.

        Custom tower classes must be registered for Keras serialisation (see
        :func:`tfrs_kit.towers.register_tower`) or given in ``custom_objects``.
        A config saved with ``candidate_id`` (``item_id``'s old name) loads too.
        """
        settings = dict(config)
        if "candidate_id" in settings:
            settings.setdefault("item_id", settings.pop("candidate_id"))
        towers = {key: tf.keras.utils.deserialize_keras_object(settings.pop(key),
                                                               custom_objects=custom_objects)
                  for key in ("query_tower", "candidate_tower")}
        return cls(**towers, **settings)

    @property
    def candidate_id(self) -> str:
        """The old name of ``item_id``, kept for reading."""
        return str(self.item_id)


def check_tower(argument: str, tower: Any) -> Tower:
    """A tower: a Keras layer with ``features`` (a :class:`~tfrs_kit.Tower` or a custom one).

    Raises:
        TypeError: anything else.
    """
    if not isinstance(tower, tf.keras.layers.Layer) or not hasattr(tower, "features"):
        raise invalid_argument(argument, "be a tfrs_kit Tower (a Keras layer with `features`)",
                               type(tower).__name__, error=TypeError)
    return tower


def item_id_of(candidate_tower: Tower, item_id: str | None, candidate_id: str | None) -> str:
    """The id column a model's constructor was given (``candidate_id`` is its old name).

    Default: the candidate tower's first feature. The old name warns at the line
    that called the model's constructor.
    """
    item_id = renamed_argument("item_id", item_id, old="candidate_id", old_value=candidate_id,
                               stacklevel=4)
    return item_id or candidate_tower.features[0]


def user_positions(user_index: pd.Index, user_ids: Any) -> np.ndarray:
    """Each user's row in ``user_index``, for a recommender's ``score``.

    Raises:
        ValueError: naming users whose query features the recommender was not given.
    """
    positions = user_index.get_indexer(pd.Index(np.asarray(user_ids)))
    if np.any(positions < 0):
        unknown = np.asarray(user_ids)[positions < 0][:5].tolist()
        raise invalid_argument(
            "user_ids", "name users whose query features are known", unknown,
            hint="Pass their rows with as_recommender(..., users=table).")
    return positions


def rows_by_key(data: TableLike, key: str, features: Sequence[str], argument: str) -> Table:
    """One row per ``key`` (its last) with ``key`` and ``features``: the users or the items.

    >>> import numpy as np
    >>> rows_by_key({"id": np.array([1, 2, 1]), "x": np.array([10, 20, 30])}, "id", ["x"],
    ...             "items")["x"].tolist()
    [20, 30]
    """
    table = to_table(data, argument=argument)
    columns = list(dict.fromkeys([key, *features]))
    return last_rows(select(table, columns, argument=argument), key)


def check_fit_settings(*, epochs: Any, batch_size: Any, seed: Any, learning_rate: Any,
                       verbose: Any) -> int:
    """Checks the settings every ``fit`` of the kit takes; returns Keras's verbosity."""
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0, allow_none=True)
    check_number("learning_rate", learning_rate, minimum=0, low_open=True, allow_none=True)
    return keras_verbosity(check_verbose("verbose", verbose, keras=True))


def keras_verbosity(verbose: bool | str | int) -> int:
    """Keras's verbosity for fit's: ``"auto"`` and ``True`` are one line per epoch (2).

    >>> keras_verbosity("auto"), keras_verbosity(False), keras_verbosity(1)
    (2, 0, 1)
    """
    if isinstance(verbose, (bool, str)):
        return 2 if verbose else 0
    return int(verbose)
