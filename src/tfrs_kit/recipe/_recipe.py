"""``tk.Recipe``: from an interaction log to a trained model, settings chosen on the log itself."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tfrs_kit._errors import NotFittedError, invalid_argument
from tfrs_kit._validation import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_verbose,
)
from tfrs_kit.data._schema import Schema, check_schema, resolve_schema
from tfrs_kit.data._table import TableLike
from tfrs_kit.recipe import _rerank
from tfrs_kit.recipe._fit_memory import fit_in_memory
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import RecipeReport
from tfrs_kit.recipe._scale import (
    DEFAULT_IN_MEMORY_ROWS,
    DEFAULT_SEARCH_ROWS,
    fit_out_of_core,
)
from tfrs_kit.recipe._settings import HISTORY_ENCODERS, Settings
from tfrs_kit.recipe._source import out_of_core
from tfrs_kit.recipe._towers import Towers, tower_factory
from tfrs_kit.recipe._training import Data, Saved, Trained
from tfrs_kit.recipe._update import (
    DEFAULT_EPOCHS,
    DEFAULT_RECHOOSE,
    DEFAULT_REPLAY,
    DEFAULT_REPLAY_WINDOW,
    DEFAULT_TOLERANCE,
    DEFAULT_WARM_SWEEPS,
    check_folder,
    update_recipe,
)

__all__ = ["Recipe"]

_METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


class Recipe:
    """A two-tower model whose settings are chosen on a validation slice of your log.

    ``fit`` carves each user's latest interactions out of the training log
    (never the test set), trains candidate settings on the rest with an Optuna
    search of ``max_trials`` settings (or ``time_budget`` seconds), stops each
    one on a ranking metric of the slice (not the loss), then retrains the
    winner on the whole log for the epochs it needed. It chooses among: a
    warm start from an implicit-feedback ALS factorisation (when the
    ``implicit`` package is installed:
    ``pip install "tfrs-kit[implicit]"``); history off, a mean-pooled bag or an
    order-aware sequence encoder; embedding size; cosine scores and their
    temperature; learning rate; epochs; training on each user's first
    interaction with an item only (when the log repeats pairs); and which item
    and user features to keep. Last, it weighs an implicit-feedback ALS
    factorisation's scores and the items' popularity beside the chosen towers'
    (``blend``; weights 0 keep the towers alone). :attr:`report` says what it
    chose and why.

    Args:
        schema: The :class:`~tfrs_kit.Schema` that names the columns; default the
            one ``fit``'s ``train`` carries (a split's output, a data set's
            table), else ``Schema()``. The fitted Recipe keeps it as
            ``schema_``, which :func:`~tfrs_kit.evaluation.evaluate` reads.
        user_id: The user id column; default the schema's.
        item_id: The item id column; default the schema's.
        timestamp: The time column (orders histories and the validation slice);
            default the schema's.
        item_features: Item attribute columns to consider, found in the log or
            in ``fit(items=...)``: one value per item is used (the catalogue's,
            else the mean of a number or the last value over the log). Default
            the ``schema`` argument's, else none: the features a log carries are
            considered only when named here or in ``schema``, as each one adds
            to the search.
        user_features: User attribute columns to consider, likewise.
        time_budget: ``None`` (the default): budgets in counts, ``max_trials``
            settings whatever the time, each for the epochs its validation
            metric chooses (at most ``max_epochs``): with the same ``seed``, two
            fits of the same log choose the same model, on any machine. A number:
            seconds for the whole ``fit`` (search and final training), an opt-in
            wall-clock bound that ends the search and epochs where the clock
            says (the report's ``clock_cut`` says what it cut). At least the
            default settings are always trained once.
        max_trials: The most settings tried (by default 3: the default recipe
            and the first two candidates the log's shape puts next).
        metric: The validation metric that chooses: ``"ndcg@10"``,
            ``"recall@10"``, ``"ndcg@20"`` or ``"recall@20"``.
        validation_fraction: Each user's latest share of interactions that
            forms the validation slice.
        histories: The history encoders to choose among (a subset of
            ``"none"``, ``"mean"``, ``"sequence"``).
        max_history: The most recent items a history holds.
        max_epochs: The most epochs of the default recipe (the search tries
            up to three times as many); default: about 600 optimizer steps'
            worth, 1 to 30. Each trial stops earlier when its validation
            metric has not improved for 2 epochs.
        blend: Add an implicit-feedback ALS factorisation's scores (with the
            ``implicit`` package) and the items' log popularity to the chosen
            towers' at weights chosen on the validation slice (0, the towers
            alone, is one of the choices); the model then embeds them side by
            side, one index still serves it.
        query_tower: The query tower of every model trained: a registered
            tower name (``"default"``, ``"cross"``, a plugin's; see
            :func:`tfrs_kit.towers.available_towers`), a
            :class:`~tfrs_kit.Tower` subclass, or a function that builds one.
            It is called as ``query_tower(vocabularies, features=[...],
            output_dim=..., normalize=..., combine="sum", sequence_features=[...])``,
            with each of the last four only if its signature takes it (by name
            or ``**kwargs``); the search then leaves out what needs a missing
            one: cosine scores (``normalize``, on either side) and the
            order-aware history (``sequence_features``). The factorisation warm
            start is tried only with the built-in towers on both sides, and the
            shared item table only with ``Tower`` subclasses that build the
            built-in encoders. :attr:`report` names the towers.
        candidate_tower: The candidate tower, likewise (called with
            ``feature_dropout`` instead of ``sequence_features``: without it,
            no item id dropout is tried).
        seed: Seeds the split-independent parts: weights, shuffles, the search.
        verbose: Show progress: ``True``, ``False`` or ``"auto"`` (a line per
            trial when the budget exceeds a minute).
        in_memory_rows: A log in files (a path, glob, list or
            :class:`~tfrs_kit.data.Shards`) of more rows than this is fitted out of
            core: prepared on disk (``tfrs_kit.features.prepare``), the settings
            searched on a sample of its users, the final model trained on every row
            streamed from the shards (see ``docs/recipe.md``, "Logs bigger than
            memory"). Smaller logs, and tables in memory, are read into memory.
        work_dir: The folder the out-of-core path prepares the log in, and where
            every ``fit`` keeps each finished trial of its search; ``None``: a
            temporary folder, removed after ``fit`` (no trial kept). A given folder
            is reused by a later ``fit`` of the same log and settings: it resumes
            a stopped preparation and replays the trials that finished (a ``fit``
            killed midway ends, started again, with the same choice).
        search_rows: The most rows of the users' sample the out-of-core search
            trains on (fewer when ``time_budget`` would not hold a few trials).
        rerank: The ranking stage: ``"auto"`` (the default) trains a
            :class:`~tfrs_kit.Cascade`'s ranker on the log less the validation slice
            and keeps it only when it lifts the validation metric by more than the
            validation users' noise (a paired per-user margin); it is skipped on a
            log fitted out of core, and when a ``time_budget`` would not hold it.
            ``True`` keeps it (an error when the log has no ranking slice or is
            fitted out of core); ``False``: none, and a quicker ``fit`` (on
            MovieLens 100K, 60 s without the stage and 285 s with it). A kept ranker
            re-orders the top ``retrieve_k`` of ``recommend``, ``evaluate``,
            ``build_index`` and ``save``; :attr:`report` says what it measured.
        beam_runner: Prepare an out-of-core log on Apache Beam
            (:func:`tfrs_kit.beam.prepare`) on this runner (a name such as
            ``"DirectRunner"`` or ``"DataflowRunner"``, or a runner object), writing the
            same ``work_dir`` the local preparation writes; ``None``: prepared here.
            Needs the ``beam`` extra.
        beam_options: The runner's options: ``PipelineOptions`` or a list of flags
            (``["--project=...", "--region=..."]``).

    Example:
        >>> import tfrs_kit as tk
        >>> data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=0)
        >>> recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, rerank=False,
        ...                    verbose=False)  # a quick fit: one setting, no ranking stage
        >>> recipe = recipe.fit(data.interactions)
        >>> len(recipe.report.trials)  # one setting tried: the first of the search
        1
        >>> recipe.schema_.item_id  # the columns it read, which tk.evaluate reuses
        'item_id'
        >>> tk.evaluate(recipe, data.interactions.tail(50), train=data.interactions,
        ...             metrics=["recall"], k=10).models
        ('Recipe',)
    """

    schema_: Schema | None = None  # set by fit (or tk.load), as report_
    report_: RecipeReport | None
    update_report_: Any = None  # the last update's UpdateReport, set by update
    cascade_: Any = None  # the served Cascade when fit kept the ranking stage (rerank)
    _item_embeddings: tuple[Any, Any] | None  # (model, the candidates' embeddings)

    def __init__(
        self,
        *,
        schema: Schema | None = None,
        user_id: str | None = None,
        item_id: str | None = None,
        timestamp: str | None = None,
        item_features: Sequence[str] | None = None,
        user_features: Sequence[str] | None = None,
        time_budget: float | None = None,
        max_trials: int = 3,
        metric: str = "ndcg@10",
        validation_fraction: float = 0.2,
        histories: Sequence[str] = HISTORY_ENCODERS,
        max_history: int = 50,
        max_epochs: int | None = None,
        blend: bool = True,
        query_tower: Any = "default",
        candidate_tower: Any = "default",
        seed: int = 0,
        verbose: bool | str = "auto",
        in_memory_rows: int = DEFAULT_IN_MEMORY_ROWS,
        work_dir: str | os.PathLike[str] | None = None,
        search_rows: int = DEFAULT_SEARCH_ROWS, rerank: bool | str = "auto",
        beam_runner: Any = None, beam_options: Any = None) -> None:
        self.schema = None if schema is None else check_schema("schema", schema)
        self._column_arguments = {"user_id": user_id, "item_id": item_id, "timestamp": timestamp}
        self.item_features = _names("item_features", item_features, schema)
        self.user_features = _names("user_features", user_features, schema)
        self.columns = self._columns(None)
        self.time_budget = check_number("time_budget", time_budget, minimum=0, low_open=True,
                                        allow_none=True)
        self.max_trials = check_int("max_trials", max_trials, minimum=1)
        self.metric = check_choice("metric", metric, _METRICS)
        self.validation_fraction = check_fraction("validation_fraction", validation_fraction)
        self.histories = tuple(check_choice("histories", h, HISTORY_ENCODERS)
                               for h in _names("histories", histories))
        if not self.histories:
            raise invalid_argument("histories", "name at least one history encoder",
                                   histories, hint=f"Choose from {list(HISTORY_ENCODERS)}.")
        self.max_history = check_int("max_history", max_history, minimum=1)
        self.max_epochs = check_int("max_epochs", max_epochs, minimum=1, allow_none=True)
        self.blend, self.rerank = check_bool("blend", blend), _rerank.check_rerank(rerank)
        self.query_tower, self.candidate_tower = query_tower, candidate_tower
        self._towers = Towers(tower_factory("query_tower", query_tower),
                              tower_factory("candidate_tower", candidate_tower))
        if not self._towers.sequence and set(self.histories) == {"sequence"}:
            raise invalid_argument(
                "histories", "name a history encoder the query tower can take", histories,
                hint=f"query_tower={self._towers.query.name!r} takes no sequence_features: "
                "add 'mean' or 'none'.")
        self.seed = check_int("seed", seed, minimum=0)
        self.verbose = check_verbose("verbose", verbose)
        self.in_memory_rows = check_int("in_memory_rows", in_memory_rows, minimum=0)
        self.work_dir = _folder(work_dir)
        self.search_rows = check_int("search_rows", search_rows, minimum=1)
        self.beam_runner, self.beam_options = _beam(beam_runner, beam_options)
        self._set_state(None, None, None, None)

    def __repr__(self) -> str:
        c = self.columns
        return (f"Recipe(user_id={c.user_id!r}, item_id={c.item_id!r}, "
                f"timestamp={c.timestamp!r}, item_features={list(self.item_features)}, "
                f"user_features={list(self.user_features)}, time_budget={self.time_budget})")

    def fit(self, train: TableLike, *, items: TableLike | None = None,
            users: TableLike | None = None) -> Recipe:
        """Chooses settings on a validation slice of ``train``, then trains on all of it.

        Args:
            train: The interaction log (a DataFrame, dict of arrays or dataset), or
                files: a log of more than ``in_memory_rows`` rows is fitted out of core.
            items: The item catalogue: one row per item with the item id and
                item features; items never interacted with become candidates.
            users: One row per user with the user id and user features.

        Returns:
            ``self``, with :attr:`model` and :attr:`report`.
        """
        if out_of_core(train, self.in_memory_rows):  # a log bigger than memory
            return fit_out_of_core(self, train, items=items, users=users)
        return fit_in_memory(self, train, items=items, users=users)

    @property
    def model(self) -> Any:
        """The trained :class:`~tfrs_kit.TwoTowerRetrieval`."""
        return self._fitted().model

    @property
    def report(self) -> RecipeReport:
        """What ``fit`` chose, why, and every trial's validation scores."""
        self._fitted()
        assert self.report_ is not None
        return self.report_

    @property
    def settings(self) -> Settings:
        """The chosen :class:`~tfrs_kit.recipe.Settings`."""
        return self._fitted().settings

    def queries(self) -> pd.DataFrame:
        """One row per user of the training log with their query features (history last)."""
        if self._saved is not None:
            return self._saved.queries.copy()
        return self._data_or_raise().queries(self.settings)

    def candidates(self) -> pd.DataFrame:
        """One row per item (the log's and the catalogue's) with its candidate features."""
        if self._saved is not None:
            return self._saved.candidates.copy()
        return self._data_or_raise().candidates(self.settings)

    def save(self, path: str | os.PathLike[str], *, k_max: int = 100,
             wait: float = 60.0) -> int:
        """Saves the fitted Recipe as the next version of the folder ``path``.

        Writes ``path/versions/<n>/`` (the manifest, vocabularies, tower weights,
        the blend's factor tables, the users' query features, the candidates, each
        user's seen items, and ``index/``, the serving SavedModel of
        :meth:`build_index`) under a temporary name, renames it into place when
        complete, then points ``path/latest`` at ``n``; a process killed midway
        leaves the previous version loadable. Load it with :func:`tfrs_kit.load`;
        list versions with :func:`tfrs_kit.recipe.versions`, go back with
        :func:`tfrs_kit.recipe.rollback`.

        Args:
            path: A new or empty folder, or one ``save`` wrote before.
            k_max: The most items the saved index returns per query (at most the
                number of candidates).
            wait: Seconds to wait for another process saving to ``path``; then
                :class:`TimeoutError`.

        Returns:
            The number ``n`` of the version written.

        Raises:
            FileExistsError: ``path`` is a file, or a folder of other files.
        """
        from tfrs_kit.recipe._save import save

        return save(self, path, k_max=k_max, wait=wait)

    def update(self, new_events: TableLike, *, replay: float = DEFAULT_REPLAY,
               epochs: int = DEFAULT_EPOCHS, tolerance: float = DEFAULT_TOLERANCE,
               force: bool = False, dir: str | os.PathLike[str] | None = None,
               k_max: int = 100, wait: float = 60.0, rechoose: bool = DEFAULT_RECHOOSE,
               warm_sweeps: int = DEFAULT_WARM_SWEEPS,
               replay_window: float = DEFAULT_REPLAY_WINDOW) -> Recipe:
        """Brings the fitted (or loaded) model up to date with ``new_events``, no refit.

        New users and items get new embedding rows (known ids keep theirs); the model
        is fine-tuned from its weights and its optimizer's state (a known row moves as
        little as its training left it to) on the new events plus ``replay`` older
        events per new one; the blend, the users' histories, seen items and index follow.
        The guard holds out each user's latest new event and refuses an update that
        scores worse there than the serving model by more than ``tolerance``
        (relative) and the holdout's noise. ``report``: ``update_report_``. See
        ``docs/recipe.md``, "Updating with new events".

        Args:
            new_events: The new interactions, in the columns and id types of ``fit``'s.
            replay: Older events sampled per new event.
            epochs: Fine-tuning epochs.
            tolerance: The largest relative drop of the guard's metric allowed.
            force: Publish even when the guard refuses.
            dir: A folder ``save`` wrote: the update is saved there as a new version,
                ``latest`` moved to it, only when published.
            k_max, wait: As in :meth:`save`.
            rechoose: Choose the blend's weights and popularity window again on half
                of the held-out users (kept unless the new ones beat them beyond noise);
                ``False`` keeps the serving ones (their counts and factors refreshed),
                a faster update.
            warm_sweeps: Sweeps of the blend's iALS from the serving model's factors
                over the new events' users and items only (the cost follows the new
                events); 0 fits it from random factors over the whole log (15 sweeps).
            replay_window: The latest share (in (0, 1]) of the older events, by time,
                that the replay is drawn from; 1 draws from all of them.

        Returns:
            ``self``, updated.

        Example:
            >>> import tfrs_kit as tk
            >>> log = tk.datasets.synthetic(300, num_users=20, num_items=15,
            ...                             seed=0).interactions.sort_values("timestamp")
            >>> recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=1,
            ...                    rerank=False, verbose=False).fit(log.head(240))
            >>> report = recipe.update(log.tail(60), epochs=1, tolerance=1.0,
            ...                        rechoose=False, warm_sweeps=3).update_report_
            >>> report.published, report.blend_users
            (True, 0)

        Raises:
            tfrs_kit.recipe.UpdateRejected: The guard refused (nothing changed).
            ValueError: ``new_events`` is empty, lacks a column of the model's, or holds
                only events already in its log (the same user, item and time).
            TypeError: An id or time column of another type than the model's.
        """
        folder = None if dir is None else check_folder(dir)
        report = update_recipe(self, new_events, replay=replay, epochs=epochs,
                               tolerance=tolerance, force=force, rechoose=rechoose,
                               warm_sweeps=warm_sweeps, replay_window=replay_window)
        if folder is not None:
            report = dataclasses.replace(report, version=self.save(folder, k_max=k_max,
                                                                   wait=wait))
        self.update_report_ = report
        return self

    def recommend(self, users: Any = None, *, history: Any = None, k: int = 10,
                  exclude_seen: bool = True, explain: bool = False) -> Any:
        """The top ``k`` candidates for users given by id, or by a history of item ids.

        Args:
            users: A user id, or a list of them. A user of the training log is
                scored from their query features at its end (their latest
                history). ``None`` with ``history``: users the model never saw.
            history: Item ids the user interacted with, most recent last: one
                list (one user) or a list of lists (one per user). It replaces a
                known user's history; a user id the model never saw (or none)
                reads the unknown-id embedding, so a new user is scored from
                their history alone (and, for user features, the most common
                value of each). A model that reads no history (see
                :attr:`settings`) scores every new user alike.
            k: The list length (at most the number of candidates).
            exclude_seen: Leave out the items a known user had in the training
                log and the items of ``history``.
            explain: Also return ``explanations``: per item, the history items
                whose removal lowers its score most and each component's share.

        Returns:
            :class:`~tfrs_kit.Recommendations`: ``ids`` and ``scores``, one row per
            user, best first; padded (id ``""`` or ``-1``, score ``-inf``) where
            fewer than ``k`` items are left.

        Raises:
            ValueError: An unknown user without a history, neither ``users`` nor
                ``history``, or ``k`` above the number of candidates.
        """
        from tfrs_kit.recipe._serve import recommend

        return recommend(self, users, history=history, k=k, exclude_seen=exclude_seen,
                         explain=explain)

    def as_recommender(self, train: TableLike | None = None, *, user_id: str | None = None,
                       item_id: str | None = None) -> Any:
        """The trained model as a :class:`~tfrs_kit.evaluation.Recommender` for ``tk.evaluate``.

        Users are scored from their query features at the end of the training
        log; a user it never saw, as the average known user. The catalogue is
        every item of the log and of ``fit(items=...)``.
        ``tk.evaluate(recipe, test, train=train)`` calls this itself.
        """
        c = self.columns
        for argument, value, expected in (("user_id", user_id, c.user_id),
                                          ("item_id", item_id, c.item_id)):
            if value is not None and value != expected:
                raise invalid_argument(argument, f"be {expected!r}, the column the Recipe "
                                       "was fitted with", value)
        if _rerank.serving_cascade(self) is not None:  # the top retrieve_k re-ranked
            return _rerank.cascade_recommender(self)
        return RecipeRecommender(self.model, queries=self.queries(), items=self.candidates(),
                                 user_id=c.user_id, item_id=c.item_id)

    def build_index(self, *, k_max: int = 100, backend: str = "auto", **options: Any) -> Any:
        """A servable :class:`~tfrs_kit.Index` over every candidate (see :class:`IndexBuilder`).

        With a kept ranking stage it serves the cascade (``retrieve_k`` recorded),
        and returns at most ``retrieve_k`` items per query.
        """
        from tfrs_kit.index import IndexBuilder

        model, candidates, k_max = _rerank.index_inputs(self, k_max)  # a kept cascade's
        return IndexBuilder(k_max=k_max, backend=backend, **options).build(model, candidates)

    def _columns(self, train: Any) -> Columns:
        """The columns for ``train`` (None: data that carries no schema), with the
        features this Recipe considers, and a history column name none of them has."""
        schema = resolve_schema(*(() if train is None else (train,)), schema=self.schema,
                                **self._column_arguments).replace(
            item_features=self.item_features, user_features=self.user_features)
        return Columns(schema, _history_name(schema.columns))

    def _seen(self) -> pd.DataFrame:
        """The user, item (and time) of each interaction of the training log (what a user
        has seen, what popularity counts and what ``update`` extends)."""
        if self._saved is not None:
            return self._saved.seen
        return self._data_or_raise().log[self.columns.ids()]

    def _restore(self, columns: Columns, trained: Trained, report: RecipeReport,
                 saved: Saved) -> None:
        """The state of a fitted Recipe, read back by ``tk.load``."""
        self.columns, self.schema_ = columns, columns.schema
        self._set_state(trained, report, None, saved)

    def _set_state(self, trained: Trained | None, report: RecipeReport | None,
                   data: Data | None, saved: Saved | None) -> None:
        """The fitted state: the model, the report, and what it serves from (the
        training data, or a loaded Recipe's saved tables)."""
        self._trained, self._data, self._saved = trained, data, saved
        self.report_ = report
        self._item_embeddings = None

    def _log(self, message: str) -> None:
        if self.verbose is True or (self.verbose == "auto" and (
                self.time_budget is None or self.time_budget > 60)):
            print(f"Recipe: {message}", file=sys.stderr, flush=True)

    def _fitted(self) -> Trained:
        if self._trained is None:
            raise NotFittedError("This Recipe is not fitted yet: call fit(train) first.")
        return self._trained

    def _data_or_raise(self) -> Data:
        self._fitted()
        assert self._data is not None
        return self._data


def _names(argument: str, names: Any, schema: Schema | None = None) -> tuple[str, ...]:
    if names is None:  # item_features or user_features not given: the schema's
        return tuple(getattr(schema, argument)) if schema is not None else ()
    if isinstance(names, str):
        raise invalid_argument(argument, "be a list of names", names,
                               hint=f"Did you mean {argument}=[{names!r}]?", error=TypeError)
    return tuple(str(n) for n in names)


def _folder(work_dir: Any) -> str | None:
    """``work_dir`` as a str, checked."""
    if work_dir is not None and not isinstance(work_dir, (str, os.PathLike)):
        raise invalid_argument("work_dir", "be a folder path or None", work_dir,
                               error=TypeError)
    return None if work_dir is None else os.fspath(work_dir)


def _beam(runner: Any, options: Any) -> tuple[Any, Any]:
    """``beam_runner`` and ``beam_options``, checked: options only with a runner."""
    if runner is None and options is not None:
        raise invalid_argument("beam_options", "come with a beam_runner", options,
                               hint="Pass beam_runner= too, e.g. 'DirectRunner'.")
    return runner, options


def _history_name(taken: Sequence[str]) -> str:
    name = "history"
    while name in taken:
        name = f"recipe_{name}"
    return name
