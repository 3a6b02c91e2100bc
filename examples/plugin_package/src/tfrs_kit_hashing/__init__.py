"""An example tfrs_kit plugin: a hashing tower and a tiny click data source.

Both are registered with tfrs_kit's decorators when this module is imported, and
declared as entry points in ``pyproject.toml``, so tfrs_kit imports this module
on the first lookup of a tower or data source name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

import tfrs_kit as tk

__all__ = ["HashingTower", "tiny_clicks"]


@tk.towers.register_tower("hashing")
class HashingTower(tk.Tower):
    """Embeds raw string features with the hashing trick: no vocabulary needed.

    Each feature's value is hashed into one of ``num_buckets`` rows of its own
    embedding table; the embeddings are concatenated, then the usual tower
    layers (``hidden_dims``, projection to ``output_dim``) apply.

    Args:
        vocabularies: Ignored (accepted so that every tower is built alike).
        features: The raw string features to hash.
        num_buckets: The rows of each feature's embedding table.
        **kwargs: The other :class:`tfrs_kit.Tower` arguments.
    """

    # It reads raw strings, so its features need no vocabulary (and it gives
    # their specs in input_signature).
    requires_vocabularies = False

    def __init__(self, vocabularies: Any = None, *, features: Sequence[str],
                 num_buckets: int = 1024, **kwargs: Any) -> None:
        super().__init__(None, features=features, **kwargs)
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
            raise ValueError(f"`num_buckets` must be a positive integer. "
                             f"Received: num_buckets={num_buckets!r}.")
        self.num_buckets = num_buckets
        self.tables = [tf.keras.layers.Embedding(num_buckets, self.embedding_dim,
                                                 name=f"hash_embedding_{i}")
                       for i in range(len(self.features))]

    def encode(self, features: Any) -> tf.Tensor:
        parts = []
        for name, table in zip(self.features, self.tables, strict=True):
            values = tf.convert_to_tensor(features[name])
            if values.dtype != tf.string:
                values = tf.strings.as_string(values)
            parts.append(table(tf.strings.to_hash_bucket_fast(values, self.num_buckets)))
        return tf.concat(parts, axis=1)

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        # No vocabularies to read the specs from: every feature is a string per row.
        return {name: tf.TensorSpec([None], tf.string, name=name) for name in self.features}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_buckets": self.num_buckets}


@tk.datasets.register_dataset("tiny_clicks")
def tiny_clicks(num_users: int = 20, num_items: int = 10, clicks_per_user: int = 5,
                seed: int = 0) -> tk.datasets.InteractionDataset:
    """Two user groups, each clicking only items of its own half of the catalogue."""
    rng = np.random.default_rng(seed)
    half = max(num_items // 2, 1)
    users = np.repeat(np.arange(num_users), clicks_per_user)
    items = (users % 2) * half + rng.integers(0, half, len(users))
    events = pd.DataFrame({
        "user_id": [f"user-{u}" for u in users],
        "item_id": [f"item-{i}" for i in items],
        "timestamp": np.arange(len(users), dtype=np.int64),
    })
    return tk.datasets.InteractionDataset(
        interactions=events,
        items=pd.DataFrame({"item_id": [f"item-{i}" for i in range(2 * half)]}),
        users=pd.DataFrame({"user_id": [f"user-{u}" for u in range(num_users)]}),
        user_id="user_id", item_id="item_id", timestamp="timestamp", name="tiny-clicks",
    )
