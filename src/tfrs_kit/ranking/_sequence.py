"""The next-item model the default ranker reads: what a user's latest items say comes next.

A small causal self-attention model over each user's latest items in order
(SASRec, Kang and McAuley, 2018), trained on every position of each user's
sequence with the softmax over the whole catalogue (what Klenitskiy and
Vasilev, 2023, found lifts SASRec past BERT4Rec; a sampled softmax over large
catalogues). Each position learns the next five items, the k-th next weighted
1 / k (a short horizon, as PinnerFormer's dense all-action loss reads a window of
future actions): a ranker asks what the user takes soon, not only next. The ranker
reads its log-probability of each listed candidate (see :func:`next_item_features`):
the two-tower retriever scores a user's history as an unordered set, this model reads
its order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._validation import check_fraction, check_int
from tfrs_kit.ranking._scoring import list_standardise

__all__ = ["NextItemModel", "fit_next_items", "next_item_features", "next_items_for", "pack",
           "refit_next_items", "training_seconds"]

_FLOOR = -20.0  # the log-probability of a candidate the model does not know
_PASSES = 4_000_000  # events read in training, over all epochs (at most _MAX_EPOCHS)
_MAX_EPOCHS, _MIN_EPOCHS = 60, 3
_MIN_STEPS = 400  # a small log's sequences are read more often (up to 400 epochs)
_FULL_SOFTMAX = 4096  # catalogues up to this size train on the full softmax
_SAMPLED = 1024  # else: this many negatives, log-uniform over the popularity order
_LOGITS = 2 ** 24  # the most logits one training batch holds
_AHEAD = 5  # each position learns the next 5 items, the k-th next weighted 1 / k


@tf.keras.utils.register_keras_serializable(package="tfrs_kit")
class NextItemModel(tf.keras.Model):
    """The log-probability of each item coming next (soon), given a user's latest items.

    Args:
        ids: The items it knows, most popular first (its positions: the index in ``ids``).
        dim: The width of its item embeddings and attention blocks.
        blocks: The self-attention blocks.
        max_length: The latest items it reads.
        dropout: The dropout rate in training.
        name: The Keras name.

    Example:
        >>> model = NextItemModel(["a", "b", "c"], dim=8, blocks=1, max_length=4)
        >>> model(tf.constant([[0, 2, -1]])).shape  # right-padded positions, oldest first
        TensorShape([1, 3])
    """

    def __init__(self, ids: Sequence[Any], *, dim: int = 64, blocks: int = 2,
                 max_length: int = 50, dropout: float = 0.3, name: str | None = None) -> None:
        super().__init__(name=name)
        self.ids = [v.item() if isinstance(v, np.generic) else v for v in ids]
        self.dim = check_int("dim", dim, minimum=2)
        self.blocks = check_int("blocks", blocks, minimum=1)
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.dropout = check_fraction("dropout", dropout, allow_zero=True)
        self.item_embedding = tf.keras.layers.Embedding(len(self.ids) + 1, self.dim)  # 0: pad
        self.position_embedding = tf.keras.layers.Embedding(self.max_length, self.dim)
        self.drop = tf.keras.layers.Dropout(self.dropout)
        self.attention = [tf.keras.layers.MultiHeadAttention(2, max(self.dim // 2, 1),
                                                             dropout=self.dropout)
                          for _ in range(self.blocks)]
        self.feed = [(tf.keras.layers.Dense(self.dim, activation="relu"),
                      tf.keras.layers.Dense(self.dim)) for _ in range(self.blocks)]
        self.norms = [tf.keras.layers.LayerNormalization() for _ in range(2 * self.blocks + 1)]

    def get_config(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "dim": self.dim, "blocks": self.blocks,
                "max_length": self.max_length, "dropout": self.dropout, "name": self.name}

    @property
    def index(self) -> pd.Index:
        """The items it knows, as an index of their positions."""
        return pd.Index(self.ids)

    def encode(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """``[batch, max_length, dim]`` from :func:`pack`'s ``[batch, max_length]``."""
        inputs = tf.cast(inputs, tf.int32)
        mask = tf.cast(inputs > 0, tf.float32)[..., None]
        x = self.item_embedding(inputs) * math.sqrt(self.dim)
        x = x + self.position_embedding(tf.range(self.max_length))[None]
        x = self.drop(x, training=training) * mask
        for i in range(self.blocks):
            h = self.norms[2 * i](x)
            x = x + self.attention[i](h, h, use_causal_mask=True, training=training)
            first, second = self.feed[i]
            h = self.drop(second(first(self.norms[2 * i + 1](x))), training=training)
            x = (x + h) * mask
        return self.norms[-1](x)

    def call(self, positions: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """``[batch, len(ids)]`` log-probabilities of the next item after ``[batch, h]``
        positions (oldest first; ``-1`` for padding or an unknown item, anywhere)."""
        packed = pack(positions, self.max_length)
        count = tf.reduce_sum(tf.cast(packed > 0, tf.int32), axis=1)
        last = tf.gather(self.encode(packed, training=training), tf.maximum(count - 1, 0),
                         batch_dims=1)
        logits = tf.matmul(last, self.item_embedding.embeddings[1:], transpose_b=True)
        return tf.nn.log_softmax(logits)

    def features(self, history: tf.Tensor, candidates: tf.Tensor,
                 found: tf.Tensor) -> tf.Tensor:
        """The ranker's two ``[batch, n, 2]`` columns of the ``[batch, n]`` ``candidates``
        after the ``[batch, h]`` ``history`` (the model's positions, ``-1``: none): each
        candidate's log-probability, floored at -20 and scaled to about unit size, and the
        same standardised over the ``found`` slots of its list; 0 for a user without a
        known history item."""
        return next_item_features(self(history, training=False), history, candidates, found)


def pack(positions: tf.Tensor, length: int) -> tf.Tensor:
    """``[batch, length]``: each row's latest ``length`` known positions + 1, oldest first
    from slot 0 (0 after them), from ``[batch, h]`` positions with ``-1`` anywhere: as
    training reads a window, so that a short history looks like a window's start.

    >>> pack(tf.constant([[4, -1, 6, -1], [-1, 8, 7, 9]]), 2).numpy().tolist()
    [[5, 7], [8, 10]]
    >>> pack(tf.constant([[4, -1, -1], [-1, -1, -1]]), 2).numpy().tolist()
    [[5, 0], [0, 0]]
    """
    positions = tf.cast(positions, tf.int32)
    valid = positions >= 0
    from_end = tf.cumsum(tf.cast(valid, tf.int32), axis=1, reverse=True)  # 1: the latest
    count = tf.minimum(tf.reduce_sum(tf.cast(valid, tf.int32), axis=1, keepdims=True), length)
    kept = valid & (from_end <= length)
    # An add into fixed slots (0 from the others), not a scatter of the kept ones: static
    # shapes, so the exported cascade compiles it with XLA.
    slots = tf.where(kept, count - from_end, 0)
    rows = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(slots))
    return tf.tensor_scatter_nd_add(tf.zeros([tf.shape(positions)[0], length], tf.int32),
                                    tf.stack([rows, slots], axis=2),
                                    tf.where(kept, positions + 1, 0))


def next_item_features(log_probs: tf.Tensor, history: tf.Tensor, candidates: tf.Tensor,
                       found: tf.Tensor) -> tf.Tensor:
    """``[batch, n, 2]``: each candidate's next-item log-probability (floored at -20 and
    scaled to about unit size) and the same standardised within its list; 0 for a user
    without a known history item.

    Args:
        log_probs: ``[batch, items]`` the model's output.
        history: ``[batch, h]`` the model's positions of each user's history (``-1``: none).
        candidates: ``[batch, n]`` its positions of the candidates (``-1``: unknown).
        found: ``[batch, n]`` which slots hold a candidate.

    Example:
        >>> out = next_item_features(tf.math.log([[0.5, 0.25, 0.25]]), tf.constant([[1]]),
        ...                          tf.constant([[0, 2, -1]]), tf.constant([[True, True, False]]))
        >>> [round(float(v), 2) for v in out[0, :, 0]]  # log(0.5) / 5 + 2, ..., the floor
        [1.86, 1.72, -2.0]
    """
    candidates = tf.cast(candidates, tf.int64)
    known = candidates >= 0
    got = tf.gather(log_probs, tf.maximum(candidates, 0), batch_dims=1)
    got = tf.where(known, tf.maximum(got, _FLOOR), _FLOOR)
    both = tf.stack([got / 5.0 + 2.0, list_standardise(got, found)], axis=2)
    has = tf.reduce_any(tf.cast(history, tf.int64) >= 0, axis=1)
    return tf.where(has[:, None, None], both, tf.zeros_like(both))


def fit_next_items(model: NextItemModel, log: pd.DataFrame, *, user_id: str, item_id: str,
                   seed: int = 0, epochs: int | None = None) -> NextItemModel:
    """Trains ``model`` on each user's items in ``log``'s row order (time order); returns it.

    Each user's sequence is cut into windows of ``max_length`` ending at their
    latest item; from each position the model learns the next five items (the k-th
    next weighted 1 / k) from the ones before it. ``epochs`` (default) reads about 4
    million events in all, from 3 to 60 passes, and at least 400 steps (batches) on
    a small log.
    """
    x, y = _windows(log, user_id=user_id, item_id=item_id, index=model.index,
                    length=model.max_length)
    if not len(x):
        return model
    tf.keras.utils.set_random_seed(seed)
    step, batch = _trainer(model)
    rng = np.random.default_rng(seed)
    for _ in range(epochs or _epochs(y, batch)):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            step(tf.constant(x[rows]), tf.constant(y[rows]))
    return model


def training_seconds(log: pd.DataFrame, ids: Iterable[Any], *, user_id: str,
                     item_id: str) -> float:
    """About how long :func:`next_items_for` takes on ``log``: a few of its steps timed
    here, times the steps it would run."""
    model = NextItemModel(list(ids))
    x, y = _windows(log, user_id=user_id, item_id=item_id, index=model.index,
                    length=model.max_length)
    if not len(x):
        return 0.0
    step, batch = _trainer(model)
    rows = np.arange(min(batch, len(x)))
    step(tf.constant(x[rows]), tf.constant(y[rows]))  # traced once, not timed
    started = time.monotonic()
    for _ in range(3):
        step(tf.constant(x[rows]), tf.constant(y[rows]))
    return (time.monotonic() - started) / 3 * _epochs(y, batch) * -(-len(x) // batch)


def _trainer(model: NextItemModel) -> tuple[Any, int]:
    """One training step of ``model`` (a ``tf.function`` of a batch of windows) and the
    batch size: the full softmax on a small catalogue, else a sampled one."""
    n = len(model.ids) + 1
    full = n <= _FULL_SOFTMAX
    batch = int(np.clip(_LOGITS // (model.max_length * (n if full else _SAMPLED)), 8, 128))
    optimizer = tf.keras.optimizers.Adam(1e-3)
    model(tf.zeros([1, 1], tf.int64))  # builds the weights
    ahead = tf.constant(1.0 / np.arange(1, _AHEAD + 1), tf.float32)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(inputs: tf.Tensor, targets: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            hidden = model.encode(inputs, training=True)
            kept = targets[:, :, 0] > 0
            outputs, labels = tf.boolean_mask(hidden, kept), tf.boolean_mask(targets, kept)
            weights = tf.where(labels > 0, ahead, 0.0)  # [positions, _AHEAD]
            table = model.item_embedding.embeddings
            if full:
                loss = -tf.gather(tf.nn.log_softmax(tf.matmul(outputs, table, transpose_b=True)),
                                  labels, batch_dims=1)
            else:
                loss = _sampled_loss(outputs, labels, table, n)
            loss = tf.reduce_sum(loss * weights) / tf.reduce_sum(weights)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    return step, batch


def _sampled_loss(outputs: tf.Tensor, labels: tf.Tensor, table: tf.Tensor,
                  n: int) -> tf.Tensor:
    """``[positions, _AHEAD]`` sampled-softmax losses of each position's targets: one draw
    of negatives (log-uniform over the popularity order, corrected by their odds), shared
    by a position's targets and never one of them."""
    labels = tf.cast(labels, tf.int64)
    sampled, true_odds, sampled_odds = tf.random.log_uniform_candidate_sampler(
        labels, _AHEAD, _SAMPLED, unique=True, range_max=n)
    true = tf.einsum("pd,pad->pa", outputs, tf.gather(table, labels)) - tf.math.log(true_odds)
    negative = (tf.matmul(outputs, tf.gather(table, sampled), transpose_b=True)
                - tf.math.log(sampled_odds))
    rows, columns, _ = tf.nn.compute_accidental_hits(labels, sampled, num_true=_AHEAD)
    negative = tf.tensor_scatter_nd_update(
        negative, tf.stack([rows, tf.cast(columns, tf.int32)], axis=1),
        tf.fill(tf.shape(rows), -1e9))
    return tf.nn.softplus(tf.reduce_logsumexp(negative, axis=1, keepdims=True) - true)


def _epochs(targets: np.ndarray, batch: int) -> int:
    """The default passes: about :data:`_PASSES` events, at least :data:`_MIN_STEPS` steps."""
    epochs = int(np.clip(_PASSES // max(int((targets[..., 0] > 0).sum()), 1), _MIN_EPOCHS,
                         _MAX_EPOCHS))
    return max(epochs, min(-(-_MIN_STEPS // -(-len(targets) // batch)), 400))


def _windows(log: pd.DataFrame, *, user_id: str, item_id: str, index: pd.Index,
             length: int) -> tuple[np.ndarray, np.ndarray]:
    """``[windows, length]`` inputs and ``[windows, length, _AHEAD]`` targets, each
    position's next items (positions + 1 from slot 0; 0 after a user's end)."""
    users = pd.factorize(log[user_id])[0]
    order = np.argsort(users, kind="stable")  # each user's rows, in the log's order
    users, items = users[order], index.get_indexer(pd.Index(log[item_id].to_numpy()[order])) + 1
    keep = items > 0
    users, items = users[keep], items[keep]
    starts = np.flatnonzero(np.diff(users, prepend=-1))  # each user's first row
    stops = np.append(starts[1:], len(users)).astype(np.int64)
    at = np.arange(len(items))[:, None] + np.arange(1, _AHEAD + 1)  # each row's next rows
    ahead = np.where(at < np.repeat(stops, stops - starts)[:, None],
                     items[np.minimum(at, max(len(items) - 1, 0))], 0).astype(np.int32)
    x, y = [], []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        for end in range(stop - 1, start, -length):  # windows ending before the latest item
            rows = slice(max(start, end - length), end)
            x.append(np.pad(items[rows], (0, length - rows.stop + rows.start)))
            y.append(np.pad(ahead[rows], ((0, length - rows.stop + rows.start), (0, 0))))
    if not x:
        return np.zeros((0, length), np.int32), np.zeros((0, length, _AHEAD), np.int32)
    return np.array(x, np.int32), np.array(y, np.int32)


def next_items_for(log: pd.DataFrame, ids: Iterable[Any], *, user_id: str, item_id: str,
                   seed: int = 0, epochs: int | None = None) -> NextItemModel:
    """A :class:`NextItemModel` over ``ids`` (most logged first: the order the sampled
    softmax's log-uniform draw assumes) trained on ``log`` (in time order)."""
    counts = log[item_id].value_counts()
    frame = pd.DataFrame({"id": list(ids)})
    frame["count"] = counts.reindex(pd.Index(frame["id"])).fillna(0).to_numpy()
    order = frame.sort_values("count", ascending=False, kind="stable")["id"].tolist()
    return fit_next_items(NextItemModel(order), log, user_id=user_id, item_id=item_id, seed=seed,
                          epochs=epochs)


def refit_next_items(model: NextItemModel, log: pd.DataFrame, *, user_id: str, item_id: str,
                     seed: int = 0) -> None:
    """Retrains ``model``'s weights from scratch on ``log`` (same items, same settings): the
    served model learns from the whole log, as the one the ranker learned with did from the
    rows before its slice."""
    fresh = fit_next_items(NextItemModel.from_config(model.get_config()), log,
                           user_id=user_id, item_id=item_id, seed=seed)
    model.set_weights(fresh.get_weights())
