"""What the Recipe chooses among: one frozen :class:`Settings` per trained model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "HISTORY_ENCODERS", "Allowed", "Settings", "base_settings", "candidate_settings",
    "feature_params", "suggest", "warm_settings",
]

# "none": ids (and features) only; "mean": the mean-pooled bag of the last items;
# "sequence": an order-aware encoder of the last items (positions and recency).
HISTORY_ENCODERS = ("none", "mean", "sequence")
_DIMS = (32, 64, 128)
_SCHEDULES = ("cosine", "constant")
_WARM_EPOCHS = 3
_STEPS = 600  # optimizer steps a default run may take: several hundred, whatever the size


@dataclasses.dataclass(frozen=True)
class Settings:
    """One point of the Recipe's search space.

    Attributes:
        history: How the query tower reads each user's preceding items:
            ``"none"``, ``"mean"`` (a bag) or ``"sequence"`` (order-aware).
        embedding_dim: The size of both towers' output.
        normalize: Unit-length embeddings (cosine scores) with ``temperature``.
        temperature: Divides the logits; only with ``normalize``.
        learning_rate: Adagrad's (initial) learning rate.
        schedule: ``"cosine"`` (decays to zero over ``epochs``) or ``"constant"``.
        epochs: The planned passes over the log (the schedule's length). A
            trial stops earlier when its validation score has not improved for
            two epochs; the final model follows the same schedule and stops at
            the trial's best epoch.
        item_features: The item features the candidate tower reads.
        user_features: The user features the query tower reads.
        user_id: Whether the query tower reads the user id (without it, a
            user is their history and features: better when histories are
            short or users new).
        id_dropout: With item features, the share of training rows whose item
            id is hidden, so the features learn to carry cold items.
        batch_size: Rows per step (and in-batch negatives).
        share_history: The history reads the candidate tower's item id
            embeddings (one table, trained from both sides: a rare item's
            embedding learns from every user who had it as well as from being
            the next item). Only without the user id (the query is then the
            user's items).
        first_only: Train on each user's first interaction with an item only:
            later repeats of a pair (re-purchases, re-plays) leave the log, so
            the model learns which items a user discovers next, which is what
            a top-k that masks known items is scored on.
        warm_start: Start both id tables from an implicit-feedback ALS
            factorisation of the log (``implicit``'s solver, at
            ``warm_regularization`` and ``warm_alpha``), then refine them with
            the softmax at ``learning_rate``; the validation slice may keep
            the factorisation as it is (zero epochs). Ids only: no history,
            no features.
        warm_regularization: The factorisation's L2 weight.
        warm_alpha: The factorisation's confidence in an interaction.
    """

    history: str = "mean"
    embedding_dim: int = 64
    normalize: bool = False
    temperature: float | None = None
    learning_rate: float = 0.05
    schedule: str = "constant"
    epochs: int = 8
    item_features: tuple[str, ...] = ()
    user_features: tuple[str, ...] = ()
    user_id: bool = True
    id_dropout: float = 0.0
    batch_size: int = 1024
    share_history: bool = False
    first_only: bool = False
    warm_start: bool = False
    warm_regularization: float = 1.0
    warm_alpha: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values; :meth:`from_dict` reads them back.

        >>> Settings.from_dict(Settings(item_features=("genre",)).to_dict()).item_features
        ('genre',)
        """
        return {field.name: (list(value) if isinstance(value, tuple) else value)
                for field in dataclasses.fields(self)
                for value in (getattr(self, field.name),)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Settings:
        """The settings :meth:`to_dict` wrote (a field it lacks keeps its default).

        Raises:
            ValueError: A key that is not a field of :class:`Settings`.
        """
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            from tfrs_kit._errors import invalid_argument

            raise invalid_argument("settings", "hold only Settings fields", unknown,
                                   hint=f"Known fields: {sorted(fields)}.")
        fixed: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                                 for key, value in values.items()}
        return cls(**fixed)

    def as_params(self) -> dict[str, Any]:
        """The settings as Optuna parameters (features one flag each)."""
        if self.warm_start:
            return {"warm_start": True, "warm_regularization": self.warm_regularization,
                    "warm_alpha": self.warm_alpha, "warm_learning_rate": self.learning_rate,
                    "embedding_dim": self.embedding_dim}
        params: dict[str, Any] = {"warm_start": False, "first_only": self.first_only,
            "history": self.history, "embedding_dim": self.embedding_dim,
            "normalize": self.normalize, "learning_rate": self.learning_rate,
            "schedule": self.schedule, "epochs": self.epochs,
        }
        if self.history != "none":
            params["user_id"] = self.user_id
            if not self.user_id:
                params["share_history"] = self.share_history
        if self.normalize:
            params["temperature"] = self.temperature
        if self.item_features:
            params["id_dropout"] = self.id_dropout
        return params

    def describe(self) -> str:
        """A one-line summary, e.g. ``history=mean dim=64 lr=0.1 cosine x5``."""
        if self.warm_start:
            return (f"warm start (iALS reg={self.warm_regularization:.3g} "
                    f"alpha={self.warm_alpha:.3g}) dim={self.embedding_dim} "
                    f"lr={self.learning_rate:.3g} x{self.epochs}")
        parts = [f"history={self.history}", f"dim={self.embedding_dim}",
                 f"lr={self.learning_rate:.3g} {self.schedule} x{self.epochs}"]
        if self.normalize:
            parts.append(f"cosine/T={self.temperature:.3g}")
        if not self.user_id:
            parts.append("no user id" + (", shared item table" if self.share_history else ""))
        if self.first_only:
            parts.append("first of each pair")
        if self.item_features:
            parts.append(f"items+{list(self.item_features)} id_dropout={self.id_dropout:.2g}")
        if self.user_features:
            parts.append(f"users+{list(self.user_features)}")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The settings the towers can take: all of them with the built-in :class:`~tfrs_kit.Tower`.

    A custom tower (``tk.Recipe(query_tower=..., candidate_tower=...)``) is
    given only the options its constructor accepts, so the search leaves out
    the settings that need one it lacks (and the order-aware history when the
    query tower takes no ``sequence_features``).

    Attributes:
        cosine: Unit-length embeddings and a temperature: both towers take ``normalize``.
        id_dropout: Hiding item ids in training: the candidate tower takes ``feature_dropout``.
        share_history: One item table for the history and the candidates: both towers are
            ``Tower`` subclasses that build the built-in encoders (``share_embeddings``
            ties their embedding tables).
        warm_start: The factorisation warm start: both towers are the built-in ``Tower``,
            whose id-only towers are the plain tables the factorisation fills.
    """

    cosine: bool = True
    id_dropout: bool = True
    share_history: bool = True
    warm_start: bool = True


def base_settings(rows: int, *, histories: Sequence[str], item_features: Sequence[str],
                  user_features: Sequence[str], max_epochs: int | None = None,
                  allowed: Allowed = Allowed()) -> Settings:
    """The default recipe sized for a log of ``rows`` interactions.

    Batches of 1,024 rows (smaller for small logs, so an epoch has 20 steps or
    more) and up to about 600 optimizer steps (1 to 30 epochs), stopped on the
    validation slice.

    >>> base = base_settings(80_000, histories=("mean",), item_features=(), user_features=())
    >>> base.batch_size, base.epochs
    (1024, 8)
    >>> small = base_settings(2_000, histories=("mean",), item_features=(), user_features=())
    >>> small.batch_size, small.epochs
    (64, 19)
    """
    batch_size = int(min(1024, max(32, 2 ** int(np.log2(max(rows, 1) / 20)))))
    steps = -(-max(rows, 1) // batch_size)
    epochs = int(np.clip(round(_STEPS / steps), 1, 30))
    return Settings(history="mean" if "mean" in histories else histories[0],
                    epochs=min(epochs, max_epochs or epochs), batch_size=batch_size,
                    item_features=tuple(item_features), user_features=tuple(user_features),
                    id_dropout=0.2 if item_features and allowed.id_dropout else 0.0)


def candidate_settings(base: Settings, histories: Sequence[str], *, repeats: bool = False,
                       warm: bool = False, short: bool = False, sparse: bool = False,
                       allowed: Allowed = Allowed()) -> list[Settings]:
    """The settings tried first, most promising first, before the tuner explores.

    ``base`` is the default recipe with every feature the user named; then the
    alternatives that most often win on some shape of data: training on first
    interactions only when the log repeats pairs (a top-k that masks known
    items scores discoveries); with ``warm`` (``implicit`` is installed) a
    factorisation warm start, the cheapest strong model, far ahead of the
    others on large sparse catalogues (``benchmarks/quality_suite.py``'s
    ``long_tail``), so on a ``sparse`` one it goes first; an order-aware
    history where the last items say most (it led by a third on very short histories in
    ``benchmarks/ablations.py``, so with ``short`` histories it goes first); no
    features where they carry no signal; no user id where histories are short;
    no history where the past says little about the next item; a decaying
    learning rate; cosine scores. What the towers cannot take (``allowed``) is left out.
    """
    sequence = dataclasses.replace(base, history="sequence")
    seeds = [sequence] if short and "sequence" in histories else []
    factorisation = [warm_settings(base)] if warm else []
    if sparse:
        seeds += factorisation
    seeds.append(base)
    if repeats:
        seeds.append(dataclasses.replace(base, first_only=True))
        base = seeds[-1]
    if not sparse:
        seeds += factorisation
    if "sequence" in histories:
        seeds.append(dataclasses.replace(base, history="sequence"))
    if base.item_features or base.user_features:
        seeds.append(dataclasses.replace(base, item_features=(), user_features=(),
                                         id_dropout=0.0))
    if base.history != "none":
        seeds.append(dataclasses.replace(base, user_id=False,
                                         share_history=allowed.share_history))
    if "none" in histories and base.history != "none":
        seeds.append(dataclasses.replace(base, history="none"))
    seeds.append(dataclasses.replace(base, learning_rate=0.1, schedule="cosine"))
    if allowed.cosine:
        seeds.append(dataclasses.replace(base, normalize=True, temperature=0.1))
    return list(dict.fromkeys(seeds))


def warm_settings(base: Settings, **changes: Any) -> Settings:
    """``base`` as id-only towers warm-started from a factorisation (``changes`` on top).

    The refinement is short (at most 3 epochs at a small rate): the
    factorisation is most of the model, and the trial stays cheap.
    """
    warm: dict[str, Any] = {
        "warm_start": True, "epochs": min(base.epochs, _WARM_EPOCHS), "history": "none",
        "item_features": (), "user_features": (), "user_id": True, "id_dropout": 0.0,
        "share_history": False, "normalize": False, "temperature": None,
        "schedule": "constant", "learning_rate": 0.005}
    return dataclasses.replace(base, **{**warm, **changes})


def suggest(trial: Any, base: Settings, item_features: Sequence[str],
            user_features: Sequence[str], histories: Sequence[str], *,
            repeats: bool = False, warm: bool = False,
            allowed: Allowed = Allowed()) -> Settings:
    """Draws settings from an Optuna trial (enqueued trials get their fixed values).

    A setting ``allowed`` rules out is never drawn (its parameter is not suggested).
    """
    if warm and trial.suggest_categorical("warm_start", [False, True]):
        return warm_settings(
            base, embedding_dim=trial.suggest_categorical("embedding_dim", list(_DIMS)),
            warm_regularization=trial.suggest_float("warm_regularization", 0.01, 100, log=True),
            warm_alpha=trial.suggest_float("warm_alpha", 1.0, 100.0, log=True),
            learning_rate=trial.suggest_float("warm_learning_rate", 1e-3, 0.03, log=True))
    history = trial.suggest_categorical("history", list(histories))
    items = _suggest_subset(trial, "item", item_features)
    normalize = allowed.cosine and trial.suggest_categorical("normalize", [False, True])
    temperature = (trial.suggest_float("temperature", 0.03, 0.3, log=True)
                   if normalize else None)
    # A user with neither id nor history would be a constant query.
    user_id = (trial.suggest_categorical("user_id", [True, False]) if history != "none"
               else True)
    return dataclasses.replace(
        base,
        history=history,
        embedding_dim=trial.suggest_categorical("embedding_dim", list(_DIMS)),
        normalize=normalize,
        temperature=temperature,
        learning_rate=trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        schedule=trial.suggest_categorical("schedule", list(_SCHEDULES)),
        epochs=trial.suggest_int("epochs", max(1, base.epochs // 2), 3 * base.epochs),
        item_features=items,
        user_features=_suggest_subset(trial, "user", user_features),
        user_id=user_id,
        share_history=(not user_id and allowed.share_history
                       and trial.suggest_categorical("share_history", [True, False])),
        first_only=repeats and trial.suggest_categorical("first_only", [True, False]),
        id_dropout=(trial.suggest_float("id_dropout", 0.0, 0.5)
                    if items and allowed.id_dropout else 0.0),
    )


def feature_params(settings: Settings, item_features: Sequence[str],
                   user_features: Sequence[str]) -> dict[str, bool]:
    """The per-feature on/off parameters of ``settings``, for enqueueing a trial."""
    return {
        **{f"item:{f}": f in settings.item_features for f in item_features},
        **{f"user:{f}": f in settings.user_features for f in user_features},
    }


def _suggest_subset(trial: Any, side: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in names if trial.suggest_categorical(f"{side}:{n}", [True, False]))
