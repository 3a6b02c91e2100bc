"""An order-aware encoder for a list of items: positions, recency and causal self-attention."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfrs_kit._validation import check_fraction, check_int, padding_value
from tfrs_kit.features._vocabulary import Vocabulary
from tfrs_kit.towers._encoders import FeatureEncoder, to_ragged

__all__ = ["SequenceEncoder"]


class SequenceEncoder(FeatureEncoder):
    """A history (a list of item ids, oldest first) encoded with its order, SASRec-style.

    The last ``max_length`` items are embedded, each plus a learned embedding of
    its distance from the most recent item (so "just watched" and "watched 40
    items ago" differ), and passed through ``num_blocks`` blocks of causal
    multi-head self-attention and a feed-forward layer (each with a residual
    connection and layer normalisation). The most recent position's output,
    which has attended to the whole history, encodes the row. An empty history
    encodes as zeros, as in the mean-pooled bag.

    Its ``lookup`` and ``embedding`` are attributes like the bag's, so
    ``TwoTowerRetrieval(share_embeddings=...)`` can share them with the
    candidate tower's item ids.

    Args:
        vocabulary: The feature's fitted vocabulary (a ``multi`` kind).
        dim: The embedding size.
        max_length: The most recent items read (default 50).
        num_blocks: Self-attention blocks.
        num_heads: Attention heads per block.
        dropout: Dropout rate inside the blocks (training only).

    Example:
        >>> import tensorflow as tf
        >>> import tfrs_kit as tk
        >>> vocabs = tk.VocabularyBuilder().fit(
        ...     {"history": [["a", "b"], ["b", "c"]]}, features={"history": "multi"})
        >>> tower = tk.Tower(vocabs, features=["history"], output_dim=8,
        ...                  sequence_features=["history"])
        >>> order = tower({"history": tf.ragged.constant([["a", "b"], ["b", "a"]])})
        >>> bool(tf.reduce_any(order[0] != order[1]))  # the order matters, unlike a mean
        True
    """

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int,
                 max_length: int | None = None, num_blocks: int = 1, num_heads: int = 2,
                 dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(vocabulary, dim, **kwargs)
        self.max_length = check_int("max_length", 50 if max_length is None else max_length,
                                    minimum=1)
        self.num_blocks = check_int("num_blocks", num_blocks, minimum=1)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.dropout = check_fraction("dropout", dropout, allow_zero=True)
        self.embedding = tf.keras.layers.Embedding(self.vocabulary.size, self.dim)
        self.positions = tf.keras.layers.Embedding(self.max_length, self.dim)
        key_dim = max(self.dim // self.num_heads, 1)
        self.attention = [tf.keras.layers.MultiHeadAttention(self.num_heads, key_dim,
                                                             dropout=self.dropout)
                          for _ in range(self.num_blocks)]
        self.feed_forward = [tf.keras.Sequential([
            tf.keras.layers.Dense(2 * self.dim, activation="relu"),
            tf.keras.layers.Dense(self.dim)]) for _ in range(self.num_blocks)]
        self.norms = [(tf.keras.layers.LayerNormalization(), tf.keras.layers.LayerNormalization())
                      for _ in range(self.num_blocks)]
        self.drop = tf.keras.layers.Dropout(self.dropout)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_length": self.max_length,
                "num_blocks": self.num_blocks, "num_heads": self.num_heads,
                "dropout": self.dropout}

    def call(self, values: Any, training: bool | None = None) -> tf.Tensor:
        items, mask = self._recent(to_ragged(values, self.vocabulary.dtype))
        # Right-aligned: the most recent item sits in the last column, distance 0.
        distance = tf.range(self.max_length - 1, -1, -1)
        x = self.embedding(self.lookup(items)) * tf.sqrt(float(self.dim))
        x = self.drop(x + self.positions(distance)[None], training=training)
        x = x * tf.cast(mask, x.dtype)[..., None]
        for block in range(self.num_blocks):
            # Only the most recent position's output is used, so the last block
            # computes that one query: the same result at a fraction of the cost.
            last = block == self.num_blocks - 1
            query = x[:, -1:, :] if last else x
            pairs = mask[:, None, :] & (mask[:, -1:, None] if last else mask[:, :, None])
            attended = self.attention[block](query, x, attention_mask=pairs,
                                             use_causal_mask=not last, training=training)
            norm_1, norm_2 = self.norms[block]
            x = norm_1(query + attended)
            x = norm_2(x + self.drop(self.feed_forward[block](x), training=training))
            x = x * tf.cast(mask[:, -1:] if last else mask, x.dtype)[..., None]
        return x[:, -1, :]

    def _recent(self, ragged: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The last ``max_length`` values of each row, right-aligned, and their mask."""
        lengths = ragged.row_lengths()
        keep = tf.minimum(lengths, self.max_length)
        starts = ragged.row_starts() + lengths - keep
        recent = tf.RaggedTensor.from_row_lengths(
            tf.gather(ragged.values, tf.ragged.range(starts, ragged.row_limits()).values), keep)
        pad = self.max_length - keep
        left = recent.to_tensor(default_value=padding_value(recent.dtype.name),
                                shape=[None, self.max_length])
        dense = _roll_rows(left, tf.cast(pad, tf.int32))
        mask = tf.range(self.max_length, dtype=tf.int64)[None, :] >= pad[:, None]
        return dense, mask


def _roll_rows(dense: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """Rolls each row right by its own ``shift`` (left-aligned rows become right-aligned)."""
    width = tf.shape(dense)[1]
    columns = tf.math.floormod(tf.range(width)[None, :] - shift[:, None], width)
    return tf.gather(dense, columns, batch_dims=1)
