"""The :class:`Tower`: named features in, one fixed-size embedding out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument, missing_column, unknown_name
from tfrs_kit._progress import Progress
from tfrs_kit._validation import (
    check_choice,
    check_features,
    check_int,
    check_number,
    check_verbose,
)
from tfrs_kit.data._table import TableLike, num_rows, to_table
from tfrs_kit.data._tensors import make_dataset, to_tensors
from tfrs_kit.features._vocabulary import Vocabularies, layer_name
from tfrs_kit.towers._encoders import FeatureEncoder, make_encoder
from tfrs_kit.towers._sequence import SequenceEncoder

__all__ = ["Tower"]


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class Tower(tf.keras.Model):
    """Encodes a set of named features into one ``[batch, output_dim]`` embedding.

    Each feature gets the built-in encoder of its vocabulary's kind (an embedding
    for ids and categories, a mean of embeddings for lists and text, a
    bucket embedding plus a learned direction scaled by the standardised value
    for numbers). Their outputs are
    concatenated, passed through optional dense layers and projected to
    ``output_dim``; a tower of one feature and no hidden layers is a plain
    embedding table (no projection), which makes an id-only two-tower model
    exactly matrix factorisation.

    Subclass and override :meth:`encode` for a custom tower; the dense layers,
    projection and normalisation still apply after it. A subclass that reads
    features without vocabularies (raw strings it hashes, precomputed vectors)
    sets :attr:`requires_vocabularies` to ``False`` and overrides
    :meth:`input_signature`.

    Args:
        vocabularies: The fitted vocabularies of (at least) ``features``.
        features: The names of the input features this tower reads.
        output_dim: The size of the embedding it outputs.
        embedding_dim: The embedding size of each feature (default ``output_dim``).
        hidden_dims: Sizes of dense ReLU layers after the concatenation.
        dropout: Dropout rate after each hidden layer.
        normalize: L2-normalise the output (cosine similarity downstream).
        l2: L2 regularisation weight of every feature embedding table.
        max_length: Multi-valued features (histories) keep only their last
            ``max_length`` values; longer inputs are cut, never refused.
        combine: How the features' encodings join: ``"concat"`` (side by
            side, then a learned projection to ``output_dim``) or ``"sum"``
            (added, each at ``embedding_dim``; no projection when that is
            ``output_dim`` and there are no hidden layers). With ``"sum"`` an
            item's id embedding and its content embeddings live in one space:
            an id-only tower is the special case of zero content, and a rare or
            unseen item is carried by its content.
        feature_dropout: Per feature, the share of training rows whose encoding
            of that feature is zeroed (Keras dropout on the whole feature), e.g.
            ``{"item_id": 0.2}``: the other features learn to stand alone,
            which is what a cold item (no trained id) needs.
        sequence_features: Multi-valued features read in order, such as a
            history of items (oldest first): an order-aware
            :class:`~tfrs_kit.towers.SequenceEncoder` (positions, recency,
            causal self-attention) instead of the mean of their embeddings.
        name: The Keras name of the tower.

    Example:
        >>> import tfrs_kit as tk
        >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"]})
        >>> tower = tk.Tower(vocabs, features=["user_id"], output_dim=8)
        >>> tower({"user_id": tf.constant(["a", "zzz"])}).shape
        TensorShape([2, 8])
    """

    #: Whether every feature needs a vocabulary (else the constructor raises
    #: ``ValueError``). A subclass that reads features without one sets it to
    #: ``False``; the features that have one still get a built-in encoder in
    #: ``self.encoders``.
    requires_vocabularies: ClassVar[bool] = True

    def __init__(
        self,
        vocabularies: Vocabularies | Mapping[str, Any] | None = None,
        *,
        features: Sequence[str],
        output_dim: int = 64,
        embedding_dim: int | None = None,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        normalize: bool = False,
        l2: float = 0.0,
        max_length: int | None = None,
        sequence_features: Sequence[str] = (),
        combine: str = "concat",
        feature_dropout: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabularies = _as_vocabularies(vocabularies)
        self.features = _check_features(features)
        self.output_dim = check_int("output_dim", output_dim, minimum=1)
        self.embedding_dim = (check_int("embedding_dim", embedding_dim, minimum=1,
                                        allow_none=True) or self.output_dim)
        self.hidden_dims = _check_hidden_dims(hidden_dims)
        self.dropout = check_number("dropout", dropout, minimum=0.0, maximum=1.0, high_open=True)
        self.normalize = bool(normalize)
        self.l2 = check_number("l2", l2, minimum=0.0)
        self.max_length = check_int("max_length", max_length, minimum=1, allow_none=True)
        self.sequence_features = self._check_sequence_features(sequence_features)
        self.combine = check_choice("combine", combine, _COMBINE)
        self.feature_dropout = _check_feature_dropout(feature_dropout, self.features)
        self.encoders = self._build_encoders()
        self.feature_dropouts = {name: tf.keras.layers.Dropout(rate, noise_shape=(None, 1))
                                 for name, rate in self.feature_dropout.items()}
        self.hidden = [tf.keras.layers.Dense(d, activation="relu") for d in self.hidden_dims]
        self.dropouts = [tf.keras.layers.Dropout(self.dropout) for _ in self.hidden_dims]
        self.projection = (None if self._is_plain_embedding()
                           else tf.keras.layers.Dense(self.output_dim))

    def _build_encoders(self) -> dict[str, FeatureEncoder]:
        """The built-in encoder of each feature with a vocabulary, by feature name."""
        encoders = {}
        for feature in self.features:
            if feature not in self.vocabularies:
                if self.requires_vocabularies:
                    raise self._no_vocabulary(feature)
                continue
            vocabulary = self.vocabularies[feature]
            if feature in self.sequence_features:
                encoder: FeatureEncoder = SequenceEncoder(
                    vocabulary, self.embedding_dim, max_length=self.max_length,
                    name=f"{layer_name(feature)}_sequence_encoder")
            else:
                encoder = make_encoder(vocabulary, self.embedding_dim,
                                       max_length=self.max_length)
            if self.l2 and hasattr(encoder, "embedding"):
                encoder.embedding.embeddings_regularizer = tf.keras.regularizers.L2(self.l2)
            encoders[feature] = encoder
        return encoders

    def _check_sequence_features(self, names: Sequence[str]) -> tuple[str, ...]:
        if isinstance(names, str):
            raise invalid_argument("sequence_features", "be a list of feature names", names,
                                   hint=f"Did you mean sequence_features=[{names!r}]?",
                                   error=TypeError)
        for name in names:
            if name not in self.features or name not in self.vocabularies or (
                    self.vocabularies[name].kind != "multi"):
                raise invalid_argument(
                    "sequence_features", "name multi-valued features the tower reads", name,
                    hint="A sequence is a list per row, such as a HistoryBuilder column; "
                    "list it in features= with a 'multi' vocabulary.")
        return tuple(str(n) for n in names)

    def _no_vocabulary(self, feature: str) -> ValueError:
        error = unknown_name("features", feature, self.vocabularies,
                             what="feature with a vocabulary")
        if type(self).__module__.startswith("tfrs_kit."):
            return error  # the hint is for authors of subclasses, not users of the built-ins
        return ValueError(f"{error} If {type(self).__name__} reads {feature!r} without a "
                          "vocabulary, set `requires_vocabularies = False` on the class.")

    def _is_plain_embedding(self) -> bool:
        """Whether the tower outputs its features' embeddings as they are (no projection).

        So it is for one id, category, list or text feature (or, with
        ``combine="sum"``, a sum of any built-in encodings: numbers too are
        embedded at ``embedding_dim``), no hidden layers and
        ``embedding_dim == output_dim``, encoded by the built-in :meth:`encode`:
        only that one is known to output exactly the features' embeddings.
        """
        if type(self).encode is not Tower.encode or self.hidden_dims or (
                self.embedding_dim != self.output_dim):
            return False
        if self.combine == "sum":
            return True  # every built-in encoder outputs an embedding of embedding_dim
        if len(self.features) != 1:
            return False
        encoder = self.encoders.get(self.features[0])
        return (encoder is not None and not self.hidden_dims
                and encoder.vocabulary.kind not in ("numeric", "timestamp")
                and self.embedding_dim == self.output_dim)

    def encode(self, features: Mapping[str, Any]) -> tf.Tensor:
        """Encodes the raw features into one ``[batch, d]`` tensor.

        Override this method for a custom tower. The default joins the
        built-in encoders' outputs (in the order of ``features``) as ``combine``
        says, after ``feature_dropout``.

        Args:
            features: The input batch, by feature name.

        Returns:
            A float tensor of shape ``[batch, d]``; ``d`` need not be ``output_dim``.
        """
        parts = [self.encoders[name](features[name]) for name in self.features]
        parts = [self.feature_dropouts[name](part) if name in self.feature_dropouts else part
                 for name, part in zip(self.features, parts, strict=True)]
        if len(parts) == 1:
            return parts[0]
        return tf.add_n(parts) if self.combine == "sum" else tf.concat(parts, axis=1)

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The spec of each raw input feature, for serving signatures.

        Built from the vocabularies: ids and text are ``[batch]`` strings or
        int64, numbers ``[batch]`` float32, lists ``[batch, length]`` padded with
        ``""`` or ``-1``. A tower with ``requires_vocabularies = False``
        overrides this, calls ``super().input_signature()`` for the features
        that have a vocabulary (it leaves out the others) and adds the specs of
        the features without one, such as a ``[None, 384]`` float32 vector::

            def input_signature(self):
                specs = super().input_signature()
                specs["text_vector"] = tf.TensorSpec([None, 384], tf.float32,
                                                     name="text_vector")
                return specs
        """
        specs = {}
        for name in self.features:
            if name not in self.vocabularies:
                if not self.requires_vocabularies:
                    continue  # the subclass's override adds its spec
                raise invalid_argument(
                    "features", "have vocabularies, or the tower must override input_signature()",
                    name,
                )
            vocab = self.vocabularies[name]
            dtype = {"string": tf.string, "int64": tf.int64}.get(vocab.dtype, tf.float32)
            shape = [None, None] if vocab.kind == "multi" else [None]
            specs[name] = tf.TensorSpec(shape, dtype, name=name)
        return specs

    def call(self, features: Mapping[str, Any], training: bool | None = None) -> tf.Tensor:
        if not isinstance(features, Mapping):
            raise invalid_argument(
                "features", "be a dict of feature name to tensor", type(features).__name__,
                error=TypeError,
            )
        missing = [name for name in self.features if name not in features]
        if missing:
            raise invalid_argument(
                "features", f"contain every feature the tower {self.name!r} reads "
                f"{list(self.features)}", f"a dict without {missing}",
                hint=f"It has {sorted(features)}.",
            )
        x = self.encode(features)
        for layer, dropout in zip(self.hidden, self.dropouts, strict=True):
            x = dropout(layer(x), training=training)
        if self.projection is not None:
            x = self.projection(x)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x

    def embed(self, data: TableLike, *, batch_size: int = 8192,
              verbose: bool | str = "auto") -> np.ndarray:
        """The tower's embedding of every row of a table, as a NumPy array.

        Args:
            data: One row per query or candidate with every feature the tower
                reads (a DataFrame, a dict of arrays or a dataset).
            batch_size: Rows encoded at once.
            verbose: Show progress: ``"auto"`` (a million rows or more),
                ``True`` or ``False``.

        Returns:
            A ``[rows, output_dim]`` float32 array, in the rows' order.

        Example:
            >>> import tfrs_kit as tk
            >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"]})
            >>> tk.Tower(vocabs, features=["user_id"], output_dim=4).embed(
            ...     {"user_id": ["a", "b", "a"]}).shape
            (3, 4)
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        verbose = check_verbose("verbose", verbose)
        table = to_table(data, argument="data")
        missing = [f for f in self.features if f not in table]
        if missing:
            raise missing_column("data", missing[0], table, role="a feature the tower reads")
        check_features("data", table, getattr(self, "vocabularies", {}), self.features)
        rows = num_rows(table)
        with Progress(rows, description=f"Embedding with {self.name}", verbose=verbose) as bar:
            if rows <= batch_size:
                # One eager call on the columns as tensors: no tf.data pipeline to build
                # (its map traced, its iterator made) for a single batch.
                embeddings = self(to_tensors(table, self.features), training=False).numpy()
                bar.update(rows)
                return embeddings
            dataset = make_dataset(table, self.features, batch_size=batch_size)
            progress = tf.keras.callbacks.LambdaCallback(
                on_predict_batch_end=lambda batch, logs: bar.update(batch_size))
            return np.asarray(self.predict(dataset, verbose=0, callbacks=[progress]))

    def get_config(self) -> dict[str, Any]:
        return {
            "vocabularies": self.vocabularies.to_dict(),
            "features": list(self.features),
            "output_dim": self.output_dim,
            "embedding_dim": self.embedding_dim,
            "hidden_dims": list(self.hidden_dims),
            "dropout": self.dropout,
            "normalize": self.normalize,
            "l2": self.l2,
            "max_length": self.max_length,
            "sequence_features": list(self.sequence_features),
            "combine": self.combine,
            "feature_dropout": dict(self.feature_dropout),
            "name": self.name,
        }

    def get_build_config(self) -> None:
        # Keras would rebuild a deserialised tower by calling it on float
        # placeholders, which string and list features reject; it builds on first call.
        return None

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Tower:
        return cls(**config)


_COMBINE = ("concat", "sum")


def _check_feature_dropout(rates: Any, features: tuple[str, ...]) -> dict[str, float]:
    """``{feature: rate}``: features the tower reads, rates in [0, 1)."""
    if rates is None:
        return {}
    if not isinstance(rates, Mapping):
        raise invalid_argument("feature_dropout", "be a dict of feature name to rate", rates,
                               hint='For example feature_dropout={"item_id": 0.2}.',
                               error=TypeError)
    for name in rates:
        if name not in features:
            raise unknown_name("feature_dropout", name, features, what="feature of the tower")
    return {str(name): check_number(f"feature_dropout[{name!r}]", rate, minimum=0.0,
                                    maximum=1.0, high_open=True)
            for name, rate in rates.items()}


def _as_vocabularies(vocabularies: Any) -> Vocabularies:
    """Vocabularies from themselves, their dict (as in a config) or None (none)."""
    if vocabularies is None:
        return Vocabularies()
    if isinstance(vocabularies, Vocabularies):
        return vocabularies
    if isinstance(vocabularies, Mapping):
        return Vocabularies.from_dict(vocabularies)
    raise invalid_argument("vocabularies", "be Vocabularies, their dict or None",
                           type(vocabularies).__name__, error=TypeError)


def _check_features(features: Any) -> tuple[str, ...]:
    """The feature names as a tuple: a non-empty list of them, never one bare string."""
    if isinstance(features, str):
        raise invalid_argument("features", "be a non-empty list of feature names", features,
                               hint=f"Did you mean features=[{features!r}]?", error=TypeError)
    if not isinstance(features, Iterable):
        raise invalid_argument("features", "be a non-empty list of feature names", features,
                               error=TypeError)
    names = tuple(str(f) for f in features)
    if not names:
        raise invalid_argument("features", "be a non-empty list of feature names", features)
    return names


def _check_hidden_dims(hidden_dims: Any) -> tuple[int, ...]:
    """The sizes of the hidden layers: a list of integers >= 1 (maybe empty)."""
    if isinstance(hidden_dims, str) or not isinstance(hidden_dims, Iterable):
        hint = (f"Did you mean hidden_dims=[{hidden_dims!r}]?"
                if isinstance(hidden_dims, int) else None)
        raise invalid_argument("hidden_dims", "be a list of layer sizes", hidden_dims,
                               hint=hint, error=TypeError)
    return tuple(check_int(f"hidden_dims[{i}]", dim, minimum=1)
                 for i, dim in enumerate(hidden_dims))
