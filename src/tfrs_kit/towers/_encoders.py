"""Built-in feature encoders: one Keras layer per feature kind.

Each encoder maps the raw values of one feature (as a batch) to a dense
``[batch, dim]`` embedding and is rebuilt from its config alone, so towers made
of them round-trip through ``get_config``/``from_config`` and SavedModel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._validation import padding_value
from tfrs_kit.features._counting import PUNCTUATION
from tfrs_kit.features._vocabulary import Vocabulary, layer_name

__all__ = ["FeatureEncoder", "TextEncoder", "make_encoder", "to_ragged"]


def to_ragged(values: Any, dtype: str) -> tf.RaggedTensor:
    """A ragged ``[batch, None]`` tensor from ragged or padded dense input."""
    if isinstance(values, tf.RaggedTensor):
        return values
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 1:
        return tf.RaggedTensor.from_tensor(tf.expand_dims(values, 1))
    return tf.RaggedTensor.from_tensor(values, padding=tf.constant(padding_value(dtype),
                                                                   dtype=values.dtype))


def _squeeze_batch(values: Any) -> tf.Tensor:
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 2 and values.shape[-1] == 1:
        values = tf.squeeze(values, axis=-1)
    return values


def _masked_mean(embeddings: tf.RaggedTensor) -> tf.Tensor:
    """Mean over each row's values; an empty row gives zeros, not NaN."""
    total = tf.reduce_sum(embeddings, axis=1)
    count = tf.cast(embeddings.row_lengths(), total.dtype)[:, None]
    return tf.math.divide_no_nan(total, count)


class FeatureEncoder(tf.keras.layers.Layer):
    """Encodes one feature into ``[batch, dim]``.

    Args:
        vocabulary: The feature's fitted :class:`~tfrs_kit.Vocabulary` (or its dict).
        dim: The embedding size.
    """

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabulary = (
            vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary.from_dict(vocabulary)
        )
        self.dim = int(dim)
        self._lookup: Any = None

    @property
    def lookup(self) -> Any:
        """The vocabulary's lookup layer, made on first use: a feature that
        shares another's (``share_embeddings``) never builds a table of its own,
        which for a history of a million items would be about 100 MB."""
        if self._lookup is None:
            self._lookup = self.vocabulary.lookup_layer()
        return self._lookup

    @lookup.setter
    def lookup(self, layer: Any) -> None:
        self._lookup = layer

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary": self.vocabulary.to_dict(), "dim": self.dim}


class CategoricalEncoder(FeatureEncoder):
    """One id or category per row: lookup, then an embedding."""

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int, **kwargs: Any) -> None:
        super().__init__(vocabulary, dim, **kwargs)
        self.embedding = tf.keras.layers.Embedding(self.vocabulary.size, self.dim)

    def call(self, values: Any) -> tf.Tensor:
        values = _squeeze_batch(values)
        if self.vocabulary.dtype == "int64" and values.dtype != tf.int64:
            values = tf.cast(values, tf.int64)  # booleans and whole floats are int ids
        return self.embedding(self.lookup(values))


class MultiValuedEncoder(FeatureEncoder):
    """A list per row (genres, tags, a history): the mean of its values' embeddings.

    Accepts ragged input, or dense input padded with "" (strings) or -1 (integers).
    An empty list encodes as zeros. With ``max_length``, only each list's last
    ``max_length`` values count (a history's most recent items).
    """

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int,
                 max_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(vocabulary, dim, **kwargs)
        self.max_length = max_length
        self.embedding = tf.keras.layers.Embedding(self.vocabulary.size, self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_length": self.max_length}

    def call(self, values: Any) -> tf.Tensor:
        ragged = to_ragged(values, self.vocabulary.dtype)
        if self.max_length is not None:
            lengths = ragged.row_lengths()
            start = tf.maximum(lengths - self.max_length, 0)
            ragged = tf.RaggedTensor.from_row_lengths(
                tf.gather(ragged.values, tf.ragged.range(ragged.row_starts() + start,
                                                         ragged.row_limits()).values),
                lengths - start)
        indices = tf.ragged.map_flat_values(self.lookup, ragged)
        return _masked_mean(tf.ragged.map_flat_values(self.embedding, indices))


class TextEncoder(FeatureEncoder):
    """A string per row: tokens (and n-grams) as in the vocabulary, mean-pooled.

    It also accepts what :meth:`tokenize` returns (ragged integer token
    indices), so training can tokenise each distinct text once, before the
    loop, instead of at every step; serving passes the strings.
    """

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int, **kwargs: Any) -> None:
        super().__init__(vocabulary, dim, **kwargs)
        self.embedding = tf.keras.layers.Embedding(self.vocabulary.size, self.dim)

    def tokenize(self, values: Any) -> tf.RaggedTensor:
        """The token (and n-gram) indices of each string: ``[batch, None]`` int64."""
        text = tf.strings.lower(_squeeze_batch(values), encoding="utf-8")
        text = tf.strings.regex_replace(text, PUNCTUATION, " ")
        words = tf.strings.split(text)
        tokens = words
        for n in range(2, self.vocabulary.ngrams + 1):
            grams = tf.strings.ngrams(words, n, separator=" ")
            tokens = tf.concat([tokens, grams], axis=1)
        return tf.ragged.map_flat_values(self.lookup, tokens)

    def call(self, values: Any) -> tf.Tensor:
        if isinstance(values, tf.RaggedTensor) and values.dtype.is_integer:
            indices = values  # tokenised already (see tokenize)
        else:
            indices = self.tokenize(values)
        return _masked_mean(tf.ragged.map_flat_values(self.embedding, indices))


class NumericEncoder(FeatureEncoder):
    """A number per row: an embedding of its quantile bucket plus a learned direction
    scaled by its standardised value.

    The output lives in the embedding space, like an id's, so it can be added to
    one (``Tower(combine="sum")``) without a projection. The direction starts at
    zero: the value adds nothing until training finds it useful. The standardised
    value is clipped to +-5, so a heavy tail cannot swamp the other features. NaN
    is read as the mean (standardised 0) and falls into its own bucket.
    """

    _CLIP = 5.0

    def __init__(self, vocabulary: Vocabulary | dict[str, Any], dim: int, **kwargs: Any) -> None:
        super().__init__(vocabulary, dim, **kwargs)
        self.buckets = tf.keras.layers.Embedding(len(self.vocabulary.boundaries) + 2, self.dim)
        self.linear = tf.keras.layers.Dense(self.dim, use_bias=False,
                                            kernel_initializer="zeros")

    def raw(self, values: Any) -> tf.Tensor:
        """The ``[batch, 1]`` values the learned direction scales: standardised, clipped."""
        x = tf.cast(_squeeze_batch(values), tf.float32)
        standard = tf.clip_by_value((x - self.vocabulary.mean) / self.vocabulary.std,
                                    -self._CLIP, self._CLIP)
        return tf.where(tf.math.is_nan(x), tf.zeros_like(standard), standard)[:, None]

    def call(self, values: Any) -> tf.Tensor:
        x = tf.cast(_squeeze_batch(values), tf.float32)
        bucket = tf.raw_ops.Bucketize(input=x, boundaries=list(self.vocabulary.boundaries))
        bucket = tf.where(tf.math.is_nan(x), len(self.vocabulary.boundaries) + 1, bucket)
        return self.buckets(bucket) + self.linear(self.raw(values))


class TimestampEncoder(NumericEncoder):
    """Seconds since the epoch: the numeric encoding, whose learned map also reads
    time-of-day and day-of-week cycles.

    The cycles are ``sin``/``cos`` pairs (UTC), so 23:59 sits next to 00:00.
    """

    def raw(self, values: Any) -> tf.Tensor:
        """``[batch, 5]``: the standardised time, then the day's and the week's sin and cos."""
        seconds = tf.cast(_squeeze_batch(values), tf.float64)
        standard = NumericEncoder.raw(self, tf.cast(seconds, tf.float32))
        seconds = tf.where(tf.math.is_nan(seconds), tf.zeros_like(seconds), seconds)
        day = 2.0 * np.pi * tf.math.floormod(seconds, 86400.0) / 86400.0
        # 1970-01-01 was a Thursday; the phase does not matter to a learned layer.
        week = 2.0 * np.pi * tf.math.floormod(seconds, 604800.0) / 604800.0
        cycles = tf.cast(tf.stack([tf.sin(day), tf.cos(day), tf.sin(week), tf.cos(week)], 1),
                         tf.float32)
        return tf.concat([standard, cycles], axis=1)


_ENCODERS: dict[str, type[FeatureEncoder]] = {
    "categorical": CategoricalEncoder,
    "multi": MultiValuedEncoder,
    "text": TextEncoder,
    "numeric": NumericEncoder,
    "timestamp": TimestampEncoder,
}


def make_encoder(vocabulary: Vocabulary, dim: int, *,
                 max_length: int | None = None) -> FeatureEncoder:
    """The built-in encoder for a vocabulary's kind."""
    name = f"{layer_name(vocabulary.name)}_encoder"
    if vocabulary.kind == "multi":
        return MultiValuedEncoder(vocabulary, dim, max_length=max_length, name=name)
    return _ENCODERS[vocabulary.kind](vocabulary, dim, name=name)
