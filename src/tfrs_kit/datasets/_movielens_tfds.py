"""MovieLens from tensorflow-datasets (the ``datasets`` extra), imported only when used.

``movielens/{variant}-ratings`` and ``-movies`` read into the same tables, columns and
dtypes as the GroupLens files give (``_movielens``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from tfrs_kit.datasets._base import read_only_rows

__all__ = ["from_tfds"]


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Loading MovieLens from tensorflow-datasets needs the `tensorflow-datasets` "
            'package. Install it with `pip install "tfrs-kit[datasets]"`, or pass '
            "`data_dir` pointing at the GroupLens files."
        ) from error
    return tfds


def from_tfds(
    variant: str, data_dir: str | os.PathLike[str] | None, *, event_columns: tuple[str, ...],
    item_features: tuple[str, ...], user_features: tuple[str, ...],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The interactions, items and users of ``movielens/{variant}``, columns in the order
    given (absent ones skipped), as the GroupLens readers give them."""
    tfds = _import_tfds()
    directory = None if data_dir is None else os.fspath(data_dir)
    ratings = _dataset_frame(
        tfds.load(f"movielens/{variant}-ratings", split="train", data_dir=directory)
    )
    items = _dataset_frame(
        tfds.load(f"movielens/{variant}-movies", split="train", data_dir=directory)
    )
    order = [c for c in (*event_columns, *item_features, *user_features) if c in ratings]
    interactions = ratings[order]
    user_columns = [c for c in ("user_id", *user_features) if c in ratings]
    users = interactions[user_columns].drop_duplicates("user_id").reset_index(drop=True)
    items = items[["movie_id", *item_features]]
    return interactions, items, users


def _dataset_frame(dataset: Any) -> pd.DataFrame:
    """A tf.data.Dataset of tfds feature dicts as a DataFrame (bytes decoded)."""
    import tensorflow as tf

    parts: dict[str, list[Any]] = {}
    ragged: set[str] = set()
    for batch in dataset.ragged_batch(65_536):
        for name, value in batch.items():
            if isinstance(value, tf.RaggedTensor):  # movie_genres: one list per row
                ragged.add(name)
                flat = value.flat_values.numpy().astype(np.int64)
                parts.setdefault(name, []).extend(np.split(flat, value.row_splits.numpy()[1:-1]))
            else:
                parts.setdefault(name, []).append(value.numpy())
    columns: dict[str, Any] = {}
    for name, chunks in parts.items():
        if name in ragged:
            columns[name] = read_only_rows(chunks)
            continue
        values = np.concatenate(chunks)
        if values.dtype == object:  # tf.string arrives as bytes
            columns[name] = pd.array([v.decode("utf-8") for v in values], dtype="str")
        else:
            columns[name] = values
    return pd.DataFrame(columns)
