"""The optimizer's state kept beside the towers' weights, so that an update trains on.

Adagrad divides each weight's step by the root of the squared gradients it has summed
(its accumulator): a row trained on many events moves little, a new row fast. An update
that starts a fresh optimizer forgets this and moves every known row as if it were new,
towards the day's events: on the drifting log of ``benchmarks/lifecycle.py`` (3,000 users)
the recall of the items older than 3 days fell below the serving model's within a day
while a refit kept it. So a fitted Recipe keeps the accumulators' mean over each row
(one number per embedding row: a ``dim``-th of the table), saves them, and an update's
optimizer starts from them, each new row at Adagrad's initial value.

The accumulators summarise the row's whole training (the correlation of an id table's
row means with its ids' counts was 0.96 to 0.997 there), not its best epoch: the
weights kept may be an earlier epoch's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_kit.recipe import _store

__all__ = ["Slots", "assign", "load", "read", "save", "usable"]

#: Per tower (query, candidate), per weight of ``tower.weights``: the mean of its
#: accumulator over each row (``None``: a weight the optimizer does not train).
Slots = tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray | None, ...]]
_SIDES = ("query", "candidate")


def read(model: Any) -> Slots | None:
    """The row means of the Adagrad accumulators of ``model``'s towers' weights
    (``None``: the model has no built Adagrad, e.g. a warm start trained no epoch)."""
    import tensorflow as tf

    optimizer = getattr(model, "optimizer", None)
    if (not isinstance(optimizer, tf.keras.optimizers.Adagrad)
            or not getattr(optimizer, "_built", False)):
        return None
    sides = []
    for tower in (model.query_tower, model.candidate_tower):
        means = []
        for weight in tower.weights:
            accumulator = _accumulator(optimizer, weight)
            means.append(None if accumulator is None else _row_means(accumulator.numpy()))
        sides.append(tuple(means))
    return sides[0], sides[1]


def assign(optimizer: Any, towers: tuple[Any, Any], slots: Slots | None) -> None:
    """Sets the built ``optimizer``'s accumulators of the ``towers``' weights to
    ``slots``: each row to its mean, the rows past the slots' (new ids) and the weights
    without one at the optimizer's initial value.

    >>> import tensorflow as tf
    >>> layer = tf.keras.layers.Embedding(3, 2); layer.build((None,))
    >>> optimizer = tf.keras.optimizers.Adagrad(initial_accumulator_value=0.1)
    >>> optimizer.build(layer.weights)
    >>> class Tower: weights = layer.weights
    >>> assign(optimizer, (Tower, Tower), ((np.array([4.0, 9.0]),), (None,)))
    >>> _accumulator(optimizer, layer.weights[0]).numpy()
    array([[4. , 4. ],
           [9. , 9. ],
           [0.1, 0.1]], dtype=float32)
    """
    if slots is None:
        return
    for tower, means in zip(towers, slots, strict=True):
        for weight, mean in zip(tower.weights, means, strict=True):
            accumulator = _accumulator(optimizer, weight)
            if accumulator is None or mean is None:
                continue
            value = np.full(weight.shape, optimizer.initial_accumulator_value, np.float32)
            if value.ndim == 0:
                value[()] = mean[0]
            else:
                rows = min(len(mean), len(value))
                value[:rows] = mean[:rows].reshape((rows,) + (1,) * (value.ndim - 1))
            accumulator.assign(value)


def usable(slots: Slots | None, towers: tuple[Any, Any]) -> Slots | None:
    """``slots`` when they are of ``towers``' weights, else ``None`` (with a warning: a
    tower's code changed since they were saved, and the update starts fresh)."""
    if slots is None or all(len(means) == len(tower.weights)
                            for tower, means in zip(towers, slots, strict=True)):
        return slots
    warnings.warn("The saved optimizer state does not match the towers' weights (a tower's "
                  "code changed since it was saved): the update starts a fresh optimizer.",
                  RuntimeWarning, stacklevel=3)
    return None


def save(slots: Slots, path: Path) -> None:
    """Writes ``slots`` to ``path`` (an ``.npz``: ``query_0``, ``candidate_2``, ...)."""
    arrays: dict[str, Any] = {f"{side}_{number}": mean
                              for side, means in zip(_SIDES, slots, strict=True)
                              for number, mean in enumerate(means) if mean is not None}
    arrays["counts"] = np.array([len(means) for means in slots])
    np.savez(path, **arrays)


def load(path: Path) -> Slots | None:
    """What :func:`save` wrote to ``path`` (``None``: no such file, as in a version
    saved before the optimizer's state was kept, or a damaged one, with a warning: the
    model serves without it, and its next update starts a fresh optimizer)."""

    def sides(arrays: Any) -> tuple[tuple[np.ndarray | None, ...], ...]:
        return tuple(tuple(arrays.get(f"{side}_{number}") for number in range(count))
                     for side, count in zip(_SIDES, arrays["counts"], strict=True))

    found = _store.read_arrays(path, sides, lost="its optimizer's state, and its next "
                               "update starts a fresh optimizer")
    return None if found is None else (found[0], found[1])


def _accumulator(optimizer: Any, weight: Any) -> Any:
    """``optimizer``'s accumulator of ``weight`` (``None``: not one it trains).
    tf_keras's Adagrad has no public accessor: its index of variables is read."""
    index = optimizer._index_dict.get(optimizer._var_key(weight))
    return None if index is None else optimizer._accumulators[index]


def _row_means(accumulator: np.ndarray) -> np.ndarray:
    """One number per row (a scalar's: one)."""
    if accumulator.ndim == 0:
        return accumulator.reshape(1).astype(np.float32)
    return accumulator.reshape(len(accumulator), -1).mean(axis=1).astype(np.float32)
