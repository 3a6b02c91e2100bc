"""The ranker's own argument checks; the generic ones live in ``tfrs_kit._validation``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_fraction, check_int, check_number

__all__ = ["check_components", "check_dims", "check_hard_fraction", "check_known_items",
           "check_loss_settings", "check_next_items", "check_ranker_weights", "check_recent"]


def check_dims(dims: Any, argument: str = "hidden_dims") -> tuple[int, ...]:
    """A list of positive layer sizes (``hidden_dims``, ``rating_hidden_dims``)."""
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        raise invalid_argument(argument, "be a list of layer sizes", dims, error=TypeError)
    return tuple(check_int(f"{argument}[{i}]", d, minimum=1) for i, d in enumerate(dims))


def check_recent(recent: Any) -> tuple[int, ...]:
    """``recent``: a non-empty list of history lengths."""
    if isinstance(recent, str) or not isinstance(recent, Sequence) or not recent:
        raise invalid_argument("recent", "be a non-empty list of history lengths", recent,
                               error=TypeError)
    return tuple(check_int(f"recent[{i}]", length, minimum=1)
                 for i, length in enumerate(recent))


def check_next_items(model: Any, history_feature: str | None) -> Any:
    """``next_items``: ``None``, a NextItemModel or its Keras config, with a history feature."""
    from tfrs_kit.ranking._sequence import NextItemModel

    if model is None:
        return None
    if isinstance(model, dict):
        model = tf.keras.utils.deserialize_keras_object(model)
    if not isinstance(model, NextItemModel):
        raise invalid_argument("next_items", "be a NextItemModel or None", type(model).__name__,
                               error=TypeError)
    if not history_feature:
        raise invalid_argument("next_items", "come with a history_feature (the items it reads)",
                               model.name, hint="Pass history_feature= too, or leave "
                               "next_items out.")
    model.trainable = False  # trained apart (fit_next_items); the ranker reads its output
    return model


def check_components(bounds: Any) -> tuple[int, ...]:
    """``components``: increasing column bounds >= 1 (empty: the score is one component)."""
    if isinstance(bounds, str) or not isinstance(bounds, Sequence):
        raise invalid_argument("components", "be a list of increasing embedding columns",
                               bounds, error=TypeError)
    out = tuple(check_int(f"components[{i}]", b, minimum=1) for i, b in enumerate(bounds))
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise invalid_argument("components", "be increasing (each bound after the last)", bounds,
                               hint="Pass the columns where each component ends, such as "
                               "(32, 64) for a 32-wide towers' part then a 32-wide iALS part.")
    return out


def check_ranker_weights(weights: Any) -> tuple[float, ...]:
    """``ranker_weights``: a non-empty list of numbers >= 0, returned sorted."""
    if isinstance(weights, str) or not isinstance(weights, Sequence) or not weights:
        raise invalid_argument("ranker_weights", "be a non-empty list of numbers", weights,
                               error=TypeError)
    return tuple(sorted(float(check_number(f"ranker_weights[{i}]", w, minimum=0))
                        for i, w in enumerate(weights)))


def check_hard_fraction(value: Any, retriever: Any) -> float:
    """``hard_fraction`` (default 0.5 with a retriever, else 0), and the retriever's type."""
    if value is None:
        return 0.5 if retriever is not None else 0.0
    fraction = check_fraction("hard_fraction", value, allow_zero=True, allow_one=True)
    if fraction and retriever is None:
        raise invalid_argument("hard_fraction", "be 0 or None without a retriever", value,
                               hint="Pass retriever= (the trained retrieval model).")
    if retriever is not None and not hasattr(retriever, "query_tower"):
        raise invalid_argument("retriever", "be a TwoTowerRetrieval (with query_tower and "
                               "candidate_tower)", type(retriever).__name__, error=TypeError)
    return fraction


def check_loss_settings(loss: str, *, negatives: int, label: str | None) -> None:
    """Negatives and label that the ranking ``loss`` can learn from."""
    if loss == "listwise" and label is not None:
        raise invalid_argument(
            "label", "be None with loss='listwise' (a softmax over one positive and its "
            "negatives)", label, hint="Pass the column as sample_weight= instead, or use "
            "loss='pointwise' to fit it.")
    if negatives == 0 and label is None:
        raise invalid_argument(
            "negatives", "be >= 1 without an explicit label (every row is a positive)",
            negatives, hint="Draw negatives, or pass label= with a column to fit.")


def check_known_items(items: np.ndarray, catalogue: np.ndarray, column: str) -> None:
    """Every item of the log in the catalogue."""
    unknown = pd.Index(catalogue).get_indexer(items) < 0
    if unknown.any():
        raise invalid_argument(
            f"x[{column!r}]", "hold candidates of the catalogue", list(items[unknown][:3]),
            hint="Pass a candidates= table that holds every item of x.")
