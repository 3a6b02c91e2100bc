"""What the Recipe chose, why, and every trial's validation scores."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tfrs_kit.recipe._settings import Settings

__all__ = ["Blend", "RecipeReport", "Rerank", "Trial"]


@dataclasses.dataclass(frozen=True)
class Blend:
    """The weights beside the towers' scores, and the validation metric of each tried.

    Attributes:
        weight: The iALS factorisation's (``0``: none; the only one tried without
            the ``implicit`` package).
        scores: The validation metric of each factorisation weight tried (the
            popularity at 0).
        popularity: The items' popularity's (``0``: none).
        popularity_scores: The validation metric of each popularity weight tried (the
            factorisation at ``weight``, the popularity over ``window``).
        window: The latest share of the log's events the popularity counts (1: all).
        window_scores: The best validation metric over the weights, for each window.
    """

    weight: float
    scores: Mapping[float, float]
    popularity: float = 0.0
    popularity_scores: Mapping[float, float] = dataclasses.field(default_factory=dict)
    window: float = 1.0
    window_scores: Mapping[float, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The blend as plain JSON values (each score map as ``[weight, score]`` pairs)."""
        return {"weight": self.weight, "scores": _pairs(self.scores),
                "popularity": self.popularity,
                "popularity_scores": _pairs(self.popularity_scores), "window": self.window,
                "window_scores": _pairs(self.window_scores)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Blend:
        """The blend :meth:`to_dict` wrote."""
        return cls(weight=values["weight"], scores=_unpair(values["scores"]),
                   popularity=values["popularity"],
                   popularity_scores=_unpair(values["popularity_scores"]),
                   window=values["window"], window_scores=_unpair(values["window_scores"]))

    @property
    def score(self) -> float:
        """The validation metric at the chosen weights."""
        if self.popularity_scores:
            return self.popularity_scores[self.popularity]
        return self.scores[self.weight]

    def describe(self) -> str:
        """The non-zero weights as the report shows them after the settings, e.g.
        ``"+ iALS x0.1 + popularity(latest 30%) x0.2"`` (with a leading space)."""
        popularity = "popularity" + (f"(latest {self.window:.0%})" if self.window < 1 else "")
        return "".join(f" + {name} x{weight:g}" for name, weight in (
            ("iALS", self.weight), (popularity, self.popularity)) if weight)

    def reasons(self, metric: str) -> list[str]:
        """One line per value chosen among two or more: its score against the others'."""
        lines = []
        for what, chosen, scores in (
                ("blend with iALS at weight", self.weight, self.scores),
                ("blend with popularity at weight", self.popularity, self.popularity_scores),
                ("popularity over the latest share of events", self.window,
                 self.window_scores)):
            if len(scores) > 1:
                others = ", ".join(f"{w:g}: {s:.4f}" for w, s in scores.items() if w != chosen)
                lines.append(f"{what} {chosen:g} (best {metric} {scores[chosen]:.4f}; "
                             f"{others})")
        return lines


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trained setting: its state (``"complete"``, ``"pruned"`` or ``"diverged"``: a
    NaN loss), validation scores, and ``clock_cut``: its planned epochs that the time
    budget left out (0: the clock stopped nothing)."""

    settings: Settings
    state: str
    epochs: int
    scores: Mapping[str, float]
    seconds: float
    clock_cut: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The trial as plain JSON values; :meth:`from_dict` reads it back."""
        return {"settings": self.settings.to_dict(), "state": self.state,
                "epochs": self.epochs, "scores": dict(self.scores), "seconds": self.seconds,
                "clock_cut": self.clock_cut}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Trial:
        """The trial :meth:`to_dict` wrote."""
        return cls(Settings.from_dict(dict(values["settings"])), values["state"],
                   values["epochs"], dict(values["scores"]), values["seconds"],
                   values.get("clock_cut", 0))


@dataclasses.dataclass(frozen=True)
class Rerank:
    """The ranking stage: what ``fit`` measured on the validation slice and chose.

    Attributes:
        mode: ``"auto"`` or ``True`` (the Recipe's ``rerank``).
        kept: Whether the fitted Recipe serves the cascade.
        retrieve_k: Candidates re-ranked per query (the best of those tried).
        loss: The ranker's loss.
        features: What the ranker reads.
        base: The validation metric without the ranking stage.
        score: The validation metric with it, at ``retrieve_k``.
        scores: The validation metric at each ``retrieve_k`` tried.
        seconds: Wall time of the stage.
        reason: Why it was not measured (a skip), else empty.
    """

    mode: bool | str
    kept: bool
    retrieve_k: int = 0
    loss: str = ""
    features: tuple[str, ...] = ()
    base: float = float("nan")
    score: float = float("nan")
    scores: Mapping[int, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""

    @classmethod
    def skipped(cls, mode: bool | str, reason: str) -> Rerank:
        """A stage not measured, for ``reason``."""
        return cls(mode=mode, kept=False, reason=reason)

    @property
    def lift(self) -> float:
        """``score / base`` (nan when skipped)."""
        return self.score / self.base if self.base > 0 else float("nan")

    def describe(self, metric: str) -> str:
        """One line: what was measured and chosen."""
        if self.reason:
            return f"rerank: {self.reason}"
        tried = ", ".join(f"k={k}: {s:.4f}" for k, s in self.scores.items())
        verdict = "kept" if self.kept else "dropped"
        forced = " (forced)" if self.mode is True else ""
        return (f"rerank {verdict}{forced}: retrieve_k={self.retrieve_k}, {self.loss} loss "
                f"on {', '.join(self.features)}; validation {metric} {self.score:.4f} vs "
                f"{self.base:.4f} without (lift x{self.lift:.3f}; {tried}), {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        """The stage as plain JSON values."""
        values = dataclasses.asdict(self)
        values["features"] = list(self.features)
        values["scores"] = [[int(k), float(v)] for k, v in self.scores.items()]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Rerank:
        """The stage :meth:`to_dict` wrote."""
        return cls(**{**values, "features": tuple(values["features"]),
                      "scores": {int(k): float(v) for k, v in values["scores"]}})


@dataclasses.dataclass(frozen=True)
class RecipeReport:
    """The outcome of :meth:`tfrs_kit.Recipe.fit`.

    Attributes:
        chosen: The settings of the final model.
        epochs: The epochs it was trained for (its best epoch on validation).
        metric: The validation metric that chose.
        trials: Every setting tried, in order.
        reasons: One line per choice: the best validation score with the
            chosen value against the best with each other value tried.
        dropped_features: Features left out before the search, and why.
        validation_users: Users in the validation slice.
        seconds: Wall time of ``fit``.
        time_budget: The budget it was given.
        note: Anything that changed the procedure (no validation slice, ...).
        blend: The factorisation's weight beside the towers and the validation
            metric of each weight tried (``None``: no blend was tried).
        towers: The names of the query and the candidate tower every model was
            built with (``"default"``: :class:`~tfrs_kit.Tower`; else the
            registered name, class or function the Recipe was given).
        stages: Seconds per stage of ``fit`` on a log bigger than memory
            (``prepare``, ``search``, ``final``, ``serving tables``); empty in memory.
        rerank: The ranking stage's measurement and choice (``None``: not tried).
        clock_cut: What the time budget cut (empty without one):
            ``trials_not_run`` (of ``max_trials``), ``trials_stopped`` (trials whose
            planned epochs it ended early), ``trial_epochs_cut`` (their epochs left
            out) and ``final_epochs_cut`` (of the final training's).
        update: After :meth:`~tfrs_kit.Recipe.update`, what the last one measured:
            ``events``, ``metric``, ``holdout_users``, and the guard's
            ``updated_score`` and ``serving_score`` (the version before, on the same
            held-out newest events); ``None`` for a fitted Recipe. The blend is then
            the one the update published, and there is no validation score (the
            other lines are the fit's).
    """

    chosen: Settings
    epochs: int
    metric: str
    trials: tuple[Trial, ...]
    reasons: tuple[str, ...]
    dropped_features: Mapping[str, str]
    validation_users: int
    seconds: float
    time_budget: float | None
    note: str = ""
    blend: Blend | None = None
    towers: tuple[str, str] = ("default", "default")
    stages: Mapping[str, float] = dataclasses.field(default_factory=dict)
    rerank: Rerank | None = None
    clock_cut: Mapping[str, int] = dataclasses.field(default_factory=dict)
    update: Mapping[str, Any] | None = None

    @classmethod
    def build(cls, *, chosen: Settings, epochs: int, trials: Sequence[Trial], metric: str,
              dropped: Mapping[str, str], validation_users: int, seconds: float,
              time_budget: float | None, note: str, blend: Blend | None = None,
              towers: tuple[str, str] = ("default", "default"),
              rerank: Rerank | None = None, max_trials: int | None = None,
              final_epochs_cut: int = 0) -> RecipeReport:
        """The report of a fit; ``max_trials`` (if known) and ``final_epochs_cut`` say,
        with the trials' own ``clock_cut``, what a time budget cut."""
        reasons = _reasons(chosen, trials, metric)
        if blend is not None:
            reasons += blend.reasons(metric)
        cut = {} if time_budget is None else _cut(trials, max_trials, final_epochs_cut)
        return cls(chosen=chosen, epochs=epochs, metric=metric, trials=tuple(trials),
                   reasons=tuple(reasons), dropped_features=dict(dropped),
                   validation_users=validation_users, seconds=seconds,
                   time_budget=time_budget, note=note, blend=blend, towers=towers,
                   rerank=rerank, clock_cut=cut)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values; :meth:`from_dict` reads it back."""
        return {
            "chosen": self.chosen.to_dict(), "epochs": self.epochs, "metric": self.metric,
            "trials": [t.to_dict() for t in self.trials],
            "reasons": list(self.reasons), "dropped_features": dict(self.dropped_features),
            "validation_users": self.validation_users, "seconds": self.seconds,
            "time_budget": self.time_budget, "note": self.note,
            "blend": None if self.blend is None else self.blend.to_dict(),
            "towers": list(self.towers), "stages": dict(self.stages),
            "rerank": None if self.rerank is None else self.rerank.to_dict(),
            "clock_cut": dict(self.clock_cut),
            "update": None if self.update is None else dict(self.update)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RecipeReport:
        """The report :meth:`to_dict` wrote."""
        trials = tuple(Trial.from_dict(t) for t in values["trials"])
        blend = values.get("blend")
        return cls(chosen=Settings.from_dict(values["chosen"]), epochs=values["epochs"],
                   metric=values["metric"], trials=trials, reasons=tuple(values["reasons"]),
                   dropped_features=dict(values["dropped_features"]),
                   validation_users=values["validation_users"], seconds=values["seconds"],
                   time_budget=values["time_budget"], note=values.get("note", ""),
                   blend=None if blend is None else Blend.from_dict(blend),
                   towers=tuple(values.get("towers", ("default", "default"))),
                   stages=dict(values.get("stages", {})),
                   rerank=Rerank.from_dict(values["rerank"]) if values.get("rerank") else None,
                   clock_cut=dict(values.get("clock_cut", {})), update=values.get("update"))

    @property
    def validation_score(self) -> float | None:
        """The validation score of the final model (its settings' best epoch, or the
        chosen blend), ``None`` without a validation slice or after an update (see
        ``update``)."""
        if self.update is not None:
            return None
        if self.blend is not None:
            return self.blend.score
        scores = [t.scores[self.metric] for t in self.trials
                  if t.settings == self.chosen and t.state == "complete"]
        return max(scores) if scores else None

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: its settings, state, epochs, seconds and validation scores."""
        rows = []
        for number, trial in enumerate(self.trials, start=1):
            row: dict[str, Any] = {"trial": number, **dataclasses.asdict(trial.settings),
                                   "state": trial.state, "epochs": trial.epochs,
                                   "seconds": round(trial.seconds, 2)}
            row.update({f"val_{k}": v for k, v in trial.scores.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        blended = self.blend.describe() if self.blend else ""
        lines = [f"Recipe: {self.chosen.describe()}{blended}, {self.epochs} epochs "
                 f"({len(self.trials)} trials, {self.seconds:.1f} s"
                 + (f" of a {self.time_budget:g} s budget)" if self.time_budget else ")")]
        if self.validation_score is not None:
            lines.append(f"  validation {self.metric} {self.validation_score:.4f} "
                         f"on {self.validation_users} users")
        if self.update is not None:
            lines.append(f"  {_last_update(self.update)}; the lines below are the fit's")
        if self.towers != ("default", "default"):
            lines.append(f"  towers: query {self.towers[0]!r}, candidate {self.towers[1]!r}")
        if self.stages:
            lines.append("  time: " + ", ".join(f"{stage} {seconds:.1f} s"
                                                 for stage, seconds in self.stages.items()))
        if self.clock_cut:
            lines.append(f"  time budget: {_clock_cut(self.clock_cut)}")
        if self.note:
            lines.append(f"  note: {self.note}")
        if self.rerank is not None:
            lines.append(f"  {self.rerank.describe(self.metric)}")
        lines += [f"  {reason}" for reason in self.reasons]
        lines += [f"  dropped {name!r}: {why}" for name, why in self.dropped_features.items()]
        return "\n".join(lines)


def _last_update(update: Mapping[str, Any]) -> str:
    """The ``update`` of a report as one line."""
    line = f"last update: {update['events']} events"
    if update.get("updated_score") is None:
        return line + ", no guard holdout"
    return (line + f"; guard {update['metric']} {update['updated_score']:.4f} against "
            f"{update['serving_score']:.4f} before, on {update['holdout_users']} users' "
            "newest events")


_KNOBS = {
    "start": lambda s: "iALS" if s.warm_start else "random",
    "repeats": lambda s: "first" if s.first_only else "all",
    "history": lambda s: s.history,
    "embedding_dim": lambda s: s.embedding_dim,
    "scores": lambda s: f"cosine/T={s.temperature:.3g}" if s.normalize else "dot",
    "item_features": lambda s: ",".join(s.item_features) or "none",
    "user_features": lambda s: ",".join(s.user_features) or "none",
}


def _cut(trials: Sequence[Trial], max_trials: int | None,
         final_epochs_cut: int) -> dict[str, int]:
    """What a time budget cut: trials not run, trials stopped early, epochs left out."""
    stopped = [t.clock_cut for t in trials if t.clock_cut]
    cut = {"trials_stopped": len(stopped), "trial_epochs_cut": sum(stopped),
           "final_epochs_cut": final_epochs_cut}
    if max_trials is not None:
        cut = {"trials_not_run": max(max_trials - len(trials), 0), "max_trials": max_trials,
               **cut}
    return cut


def _clock_cut(cut: Mapping[str, int]) -> str:
    """What the clock cut, in words (``"it cut nothing"`` when nothing)."""
    parts = []
    if cut.get("trials_not_run"):
        parts.append(f"{cut['trials_not_run']} of max_trials={cut['max_trials']} trials "
                     "not run")
    if cut.get("trials_stopped"):
        parts.append(f"{cut['trials_stopped']} trial(s) stopped before their planned "
                     f"epochs ({cut['trial_epochs_cut']} epoch(s) not run)")
    if cut.get("final_epochs_cut"):
        parts.append(f"the final training's last {cut['final_epochs_cut']} epoch(s)")
    return ("the clock cut " + "; ".join(parts) if parts
            else "the clock cut nothing (every trial and epoch planned ran)")


def _pairs(scores: Mapping[float, float]) -> list[list[float]]:
    return [[float(key), float(value)] for key, value in scores.items()]


def _unpair(pairs: Sequence[Sequence[float]]) -> dict[float, float]:
    return {float(key): float(value) for key, value in pairs}


def _reasons(chosen: Settings, trials: Sequence[Trial], metric: str) -> list[str]:
    """For each knob: the chosen value's best score against each other value's best."""
    complete = [t for t in trials if t.state == "complete"]
    lines = []
    for knob, value_of in _KNOBS.items():
        best: dict[Any, float] = {}
        for trial in complete:
            value = value_of(trial.settings)
            best[value] = max(best.get(value, float("-inf")), trial.scores[metric])
        if len(best) < 2:
            continue
        mine = value_of(chosen)
        others = ", ".join(f"{v}: {s:.4f}" for v, s in best.items() if v != mine)
        lines.append(f"{knob}={mine} (best {metric} {best[mine]:.4f}; {others})")
    return lines
