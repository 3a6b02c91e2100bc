"""One model from one :class:`Settings`: build the towers, train, score the validation slice."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit.evaluation import evaluate
from tfrs_kit.features._history import HistoryBuilder
from tfrs_kit.features._vocabulary import VocabularyBuilder
from tfrs_kit.recipe import _slots
from tfrs_kit.recipe._inputs import Columns, attach
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._settings import Settings
from tfrs_kit.recipe._towers import DEFAULT_TOWERS, Towers
from tfrs_kit.retrieval import TwoTowerRetrieval

__all__ = ["Data", "Saved", "Trained", "build_model", "count_vocabularies", "train",
           "train_final", "validation_scores", "validation_scores_of"]


@dataclasses.dataclass(frozen=True)
class Data:
    """What a model is trained on: a log, and one row per item and per user (and the
    towers every model is built with)."""

    log: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    columns: Columns
    max_history: int
    towers: Towers = DEFAULT_TOWERS

    def history(self) -> HistoryBuilder:
        c = self.columns
        return HistoryBuilder(user_id=c.user_id, item_id=c.item_id, timestamp=c.timestamp,
                              max_length=self.max_history, name=c.history)

    def events(self, settings: Settings) -> pd.DataFrame:
        """The log the model learns from: each (user, item) pair's first row if
        ``settings.first_only``, in time order."""
        if not settings.first_only:
            return self.log
        c = self.columns
        log = self.log if c.timestamp is None else self.log.sort_values(c.timestamp,
                                                                         kind="stable")
        return log.drop_duplicates([c.user_id, c.item_id], keep="first")

    def rows(self, settings: Settings) -> dict[str, Any]:
        """The training rows: the log with history and attribute columns."""
        c = self.columns
        log = self.events(settings)
        rows: dict[str, Any] = {n: log[n].to_numpy() for n in c.ids()}
        if settings.history != "none":
            rows = self.history().transform(rows)
        rows = attach(rows, self.items, c.item_id, settings.item_features)
        return attach(rows, self.users, c.user_id, settings.user_features)

    def queries(self, settings: Settings) -> pd.DataFrame:
        """One row per user: the query features at the end of the log."""
        c = self.columns
        if settings.history != "none":
            users = pd.DataFrame(self.history().for_users(self.events(settings)))
        else:
            users = pd.DataFrame({c.user_id: pd.unique(self.log[c.user_id])})
        columns = {str(name): users[name].to_numpy() for name in users.columns}
        return pd.DataFrame(attach(columns, self.users, c.user_id, settings.user_features))

    def candidates(self, settings: Settings) -> pd.DataFrame:
        """One row per item (the log's and the catalogue's) with the candidate features."""
        return self.items[[self.columns.item_id, *settings.item_features]]


@dataclasses.dataclass(frozen=True)
class Saved:
    """What a loaded Recipe serves from, in place of the training log: one row per user
    (their query features at the end of the log), one per candidate, and the user and
    item of each interaction of the training log (``[user_id, item_id]``)."""

    queries: pd.DataFrame
    candidates: pd.DataFrame
    seen: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model and how it did on the validation slice."""

    model: TwoTowerRetrieval
    settings: Settings
    epochs: int  # the best epoch (the weights kept)
    scores: dict[str, float]
    seconds: float
    epochs_run: int = 0  # the epochs trained before the trial stopped
    final_seconds: float = 0.0  # the estimated time of its final training on the whole log
    clock_cut: int = 0  # planned epochs not run because the deadline stopped the training
    slots: _slots.Slots | None = None  # the optimizer's state of the towers' weights


def count_vocabularies(columns: Columns, settings: Settings, rows: dict[str, Any]) -> Any:
    """The vocabularies of the model of ``settings``, counted on ``rows``."""
    c = columns
    kinds: dict[str, str] = {c.user_id: "categorical", c.item_id: "categorical"}
    if settings.history != "none":
        kinds[c.history] = "multi"
    features = [*settings.item_features, *settings.user_features]
    vocabularies = VocabularyBuilder().fit(rows, features=list(kinds) + features,
                                           verbose=False)
    vocabularies = _with_kinds(vocabularies, kinds)
    if settings.share_history and settings.history != "none":
        vocabularies = vocabularies.alias(c.history, c.item_id, kind="multi")
    return vocabularies


def build_model(data: Data, settings: Settings, rows: dict[str, Any] | None = None, *,
                vocabularies: Any = None) -> TwoTowerRetrieval:
    """The two-tower model of ``settings``, its vocabularies counted on ``rows`` (or
    given: a saved model's), its towers built by ``data.towers`` (each given the options
    its constructor takes). The model keeps its vocabularies as ``vocabularies_``."""
    c = data.columns
    if vocabularies is None:
        assert rows is not None
        vocabularies = count_vocabularies(c, settings, rows)
    query = [c.user_id] if settings.user_id else []
    if settings.history != "none":
        query.append(c.history)
    query += settings.user_features
    sequence = [c.history] if settings.history == "sequence" else []
    share = {}
    if settings.share_history and settings.history != "none":
        share = {c.history: c.item_id}
    size = settings.embedding_dim
    # Features join the ids additively, in their space, with no projection: a rare or
    # cold item is carried by its content, a user by their history (as in SVD++), and
    # id-only matrix factorisation stays a special case. (A projection after the
    # features cost a fifth of ndcg@10 on the suite's content log.)
    dropout = {c.item_id: settings.id_dropout} if settings.id_dropout else None
    model = TwoTowerRetrieval(
        data.towers.query(vocabularies, features=query, sequence_features=sequence,
                          output_dim=size, normalize=settings.normalize, combine="sum"),
        data.towers.candidate(vocabularies, features=[c.item_id, *settings.item_features],
                              combine="sum", feature_dropout=dropout, output_dim=size,
                              normalize=settings.normalize),
        temperature=settings.temperature if settings.normalize else None,
        share_embeddings=share,
    )
    model.vocabularies_ = vocabularies  # what a saved Recipe writes beside the weights
    return model


def _with_kinds(vocabularies: Any, kinds: dict[str, str]) -> Any:
    for name, kind in kinds.items():
        if vocabularies[name].kind != kind:
            vocabularies = vocabularies.alias(name, name, kind=kind)
    return vocabularies


class EpochDeadline(tf.keras.callbacks.Callback):
    """Stops training when another epoch as long as the last, plus ``extra(epoch)``
    seconds, would end after ``deadline``."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self._epoch_start = time.monotonic()
        self.stopped_at: int | None = None  # the epochs run when the deadline stopped it

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        now = time.monotonic()
        if now + (now - self._epoch_start) + self.extra(epoch) > self.deadline:
            self.model.stop_training = True
            self.stopped_at = epoch + 1

    def cut(self, planned: int) -> int:
        """The epochs of ``planned`` the deadline left out (0: it stopped nothing)."""
        return 0 if self.stopped_at is None else max(planned - self.stopped_at, 0)

    def extra(self, epoch: int) -> float:
        """Seconds needed after the next epoch (none here)."""
        return 0.0


class RankingMonitor(EpochDeadline):
    """Scores the validation slice after each epoch; keeps the best weights; stops early.

    ``report(epoch, score)`` may raise to end the run (a pruned Optuna trial).
    With ``initial``, the weights before the first epoch are scored too (best
    epoch 0). Another epoch starts only if it ends before ``deadline`` with time
    left for the final training of this setting one epoch longer (:meth:`final`)
    or, if longer, the ``reserved`` seconds already kept for another setting's
    final training. With ``keep_in`` (a folder) the best weights are kept there,
    one ``.npy`` file per variable, not in memory (a streamed final training's
    tables are as large as the catalogue and the users), and restored one variable
    at a time.
    """

    def __init__(self, score: Callable[[], dict[str, float]], metric: str, patience: int,
                 deadline: float, report: Callable[[int, float], None] | None = None, *,
                 initial: bool = False, final_share: float = 0.0,
                 reserved: float = 0.0, keep_in: str | None = None) -> None:
        super().__init__(deadline)
        self.keep_in = keep_in
        self._kept = False  # whether keep_in holds the best weights
        self._scored: int | None = None  # the epochs trained when last scored
        self.initial = initial
        self.final_share, self.reserved = final_share, reserved
        self._created = time.monotonic()
        self._setup = 0.0  # from this callback's creation to the first epoch
        self._training: list[float] = []  # each epoch's training time (scoring left out)
        self._score, self.metric, self.patience = score, metric, patience
        self._report = report
        self.best: dict[str, float] = {}
        self.best_epoch = 0
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        super().on_epoch_begin(epoch, logs)
        if not self._training:
            self._setup = self._epoch_start - self._created

    def on_train_begin(self, logs: Any = None) -> None:
        if self.initial:  # a warm-started model may be best as it is
            self._keep_if_better(0)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._training.append(time.monotonic() - self._epoch_start)
        score = self._keep_if_better(epoch + 1)
        if self._report is not None:
            self._report(epoch, score)
        if epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True  # no patience left
        else:
            super().on_epoch_end(epoch, logs)  # or no time for another epoch and the final

    def extra(self, epoch: int) -> float:
        return max(self.reserved, self.final(epoch + 2))

    def final(self, epochs: int) -> float:
        """Seconds to train this setting from scratch for ``epochs`` on ``final_share``
        times as many rows: its setup and its mean epoch so far (the first epoch's
        tracing included, as the final's first epoch traces too), scoring left out."""
        if not self._training:
            return 0.0
        mean = sum(self._training) / len(self._training)
        return self.final_share * (self._setup + mean * epochs)

    def _keep_if_better(self, epochs: int) -> float:
        scores = self._score()
        self._scored = epochs
        if not self.best or scores[self.metric] > self.best[self.metric]:
            self.best, self.best_epoch = scores, epochs
            if self.keep_in is None:
                self._best_weights = self.model.get_weights()
            else:
                os.makedirs(self.keep_in, exist_ok=True)
                for number, variable in enumerate(self.model.weights):
                    np.save(self._kept_path(number), variable.numpy())
                self._kept = True
        return scores[self.metric]

    def _kept_path(self, number: int) -> str:
        assert self.keep_in is not None
        return os.path.join(self.keep_in, f"weight-{number:04d}.npy")

    def restore(self) -> None:
        """The best epoch's weights back in the model (nothing to do when the last
        epoch scored was the best: the weights are those)."""
        if self.best_epoch == self._scored:
            return
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
        elif self._kept:
            for number, variable in enumerate(self.model.weights):
                variable.assign(np.load(self._kept_path(number)))


def train(data: Data, settings: Settings, *, validation: pd.DataFrame, metric: str,
          patience: int, deadline: float, seed: int,
          report: Callable[[int, float], None] | None = None, final_share: float = 0.0,
          reserved: float = 0.0) -> Trained:
    """Trains until the validation ranking metric stops improving; keeps the best epoch.

    ``deadline``, ``final_share`` and ``reserved`` are as in :class:`RankingMonitor`.
    """
    start = time.monotonic()
    rows, model = _compiled_model(data, settings, seed)
    c = data.columns
    queries, candidates = data.queries(settings), data.candidates(settings)

    def score() -> dict[str, float]:
        recommender = RecipeRecommender(model, queries=queries, items=candidates,
                                        user_id=c.user_id, item_id=c.item_id)
        return validation_scores(recommender, data, validation, metric)

    monitor = RankingMonitor(score, metric, patience, deadline, report,
                             initial=settings.warm_start, final_share=final_share,
                             reserved=reserved)
    history = model.fit(rows, epochs=settings.epochs, batch_size=settings.batch_size,
                        seed=seed, verbose=0, callbacks=[monitor])
    monitor.restore()
    return Trained(model, settings, monitor.best_epoch, monitor.best,
                   time.monotonic() - start, epochs_run=len(history.epoch),
                   final_seconds=monitor.final(monitor.best_epoch),
                   clock_cut=monitor.cut(settings.epochs), slots=_slots.read(model))


def validation_scores(recommender: Any, data: Data, validation: pd.DataFrame,
                      metric: str) -> dict[str, float]:
    """``recommender``'s recall, ndcg and ``metric`` on the validation slice (items of
    ``data.log`` masked)."""
    return validation_scores_of({"model": recommender}, data, validation, metric)["model"]


def validation_scores_of(recommenders: dict[Any, Any], data: Data, validation: pd.DataFrame,
                         metric: str) -> dict[Any, dict[str, float]]:
    """:func:`validation_scores` of several recommenders by key, the slice read once."""
    name, k = metric.split("@")
    c = data.columns
    names = {f"m{i}": key for i, key in enumerate(recommenders)}
    result = evaluate({n: recommenders[key] for n, key in names.items()}, validation,
                      train=data.log, k=int(k), user_id=c.user_id, item_id=c.item_id,
                      metrics=sorted({name, "recall", "ndcg"}), verbose=False)
    return {key: dict(result[n]) for n, key in names.items()}


def train_final(data: Data, settings: Settings, *, epochs: int, seed: int,
                deadline: float = float("inf")) -> Trained:
    """Trains ``settings`` on all of ``data``: its schedule, stopped after ``epochs``.

    ``epochs`` is the validated trial's best epoch: with the same schedule
    (planned over ``settings.epochs``), the final model stops where the trial
    did best (a warm start at zero epochs is its factorisation). Without a
    validated epoch, ``deadline`` ends it sooner: no epoch starts that would end
    after it (by the last epoch's time), but the first always runs.
    """
    start = time.monotonic()
    rows, model = _compiled_model(data, settings, seed)
    epochs = epochs if settings.warm_start else max(epochs, 1)
    clock = EpochDeadline(deadline)
    if epochs:
        history = model.fit(rows, epochs=epochs, batch_size=settings.batch_size, seed=seed,
                            verbose=0, callbacks=[clock])
    run = len(history.epoch) if epochs else 0
    return Trained(model, settings, run, {}, time.monotonic() - start, epochs_run=run,
                   clock_cut=clock.cut(epochs), slots=_slots.read(model))


def _compiled_model(data: Data, settings: Settings,
                    seed: int) -> tuple[dict[str, Any], TwoTowerRetrieval]:
    """The training rows and a new model compiled for them (seeded weights).

    Adagrad at the settings' rate; a cosine decay spans the planned epochs.
    """
    tf.keras.utils.set_random_seed(seed)
    rows = data.rows(settings)
    model = build_model(data, settings, rows)
    if settings.warm_start:
        warm_start(model, data, settings, seed)
    rate: Any = settings.learning_rate
    if settings.schedule == "cosine":
        steps = settings.epochs * -(-len(rows[data.columns.item_id]) // settings.batch_size)
        rate = tf.keras.optimizers.schedules.CosineDecay(rate, steps)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=rate))
    return rows, model


def warm_start(model: TwoTowerRetrieval, data: Data, settings: Settings, seed: int) -> None:
    """Sets the user and item id tables to an implicit-feedback ALS factorisation.

    With id-only towers (plain embedding tables) the model then scores exactly
    as the factorisation does, before any training.
    """
    from tfrs_kit.baselines import ImplicitALS

    c = data.columns
    als = ImplicitALS(factors=settings.embedding_dim, alpha=settings.warm_alpha,
                      regularization=settings.warm_regularization, seed=seed)
    als.fit(data.events(settings), user_id=c.user_id, item_id=c.item_id)
    for tower, feature, ids, factors in (
        (model.query_tower, c.user_id, als.user_ids_, als.user_factors_),
        (model.candidate_tower, c.item_id, als.item_ids_, als.item_factors_),
    ):
        encoder = tower.encoders[feature]
        table = np.zeros((encoder.vocabulary.size, settings.embedding_dim), np.float32)
        table[encoder.lookup(tf.constant(ids)).numpy()] = factors
        encoder.embedding.build((None,))
        encoder.embedding.set_weights([table])
