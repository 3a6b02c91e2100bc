"""A blend: the two-tower scores plus a factorisation's and the items' popularity, weighed
on the validation slice.

Two models of different families make different mistakes: an implicit-feedback
ALS factorisation is strong on co-occurrence, the softmax-trained towers on
order, content and recency. And towers trained with the logQ correction learn
what a user likes *beyond* what everyone likes: the popularity they leave out is
worth adding back when the next items follow the crowd (a temporal split
usually does). The towers' and the factorisation's scores, each divided by its
spread over the catalogue, and the items' standardised log counts are added
with weights chosen on the validation slice (weights 0 keep the towers alone).
The blend is still one dot product: each side's embedding is the tower's beside
a factor table (:class:`JoinedTower`; the query side's last column is 1, the
candidate side's the popularity), so it serves from the same index as any
two-tower model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit.data._table import TableLike, to_table
from tfrs_kit.features._vocabulary import Vocabulary
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import Blend
from tfrs_kit.recipe._training import Data, Trained, validation_scores_of

__all__ = ["POPULARITY_WEIGHTS", "WEIGHTS", "WINDOWS", "Blend", "JoinedTower", "Sources",
           "blend_model", "blended", "choice_users", "choose", "choose_weights",
           "joined_recommender", "latest_rows",
           "spread_sample", "standardised_log_counts"]

#: The factorisation's weights tried on the validation slice (0: the towers alone; 5: the
#: factorisation all but alone, for towers the budget left undertrained).
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
#: The popularity's weights (in units of the towers' spread, per standard deviation of the
#: items' log counts).
POPULARITY_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
#: The latest shares of the events the popularity is counted over (1: all of them; what
#: everyone takes now may differ from what they took over the whole log).
WINDOWS = (1.0, 0.3, 0.1, 0.03)
_SPREAD_USERS = 2_000  # users whose scores measure a model's spread
_VALIDATION_USERS = 5_000  # the most validation users the weights are compared on
_MIN_VALIDATION_USERS = 1_000  # ... and the fewest, however large the catalogue
_SCORES = 50_000_000  # users x items scored per weight, above which fewer users are drawn


@tf.keras.utils.register_keras_serializable("tfrs_kit")
class JoinedTower(tf.keras.Model):
    """A trained tower's embedding beside a fixed factor table read by an id feature.

    The dot product of a joined query tower and a joined candidate tower is
    ``scale * towers' score + factor_scale * factors' score``: two models'
    scores added with weights, servable by one index.

    Args:
        tower: The trained tower (its output is multiplied by ``scale``).
        vocabulary: The vocabulary of the id feature that reads the factors.
        factors: ``[vocabulary.size, dim]`` rows in the vocabulary's index order
            (row 0, the unknown id, is usually zeros).
        scale: Multiplies the tower's output.
        factor_scale: Multiplies the factors.
    """

    def __init__(self, tower: Any, vocabulary: Vocabulary | Mapping[str, Any],
                 factors: np.ndarray, *, scale: float = 1.0, factor_scale: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tower = tower
        self.vocabulary = (vocabulary if isinstance(vocabulary, Vocabulary)
                           else Vocabulary.from_dict(vocabulary))
        self.id_feature = self.vocabulary.name
        self.features = tuple(dict.fromkeys([*tower.features, self.id_feature]))
        self.vocabularies = getattr(tower, "vocabularies", {})
        self.scale, self.factor_scale = float(scale), float(factor_scale)
        self.lookup = self.vocabulary.lookup_layer()
        self.factors = tf.Variable(np.asarray(factors, np.float32), trainable=False,
                                   name="factors")

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The tower's input specs and the id feature's."""
        specs = dict(self.tower.input_signature())
        dtype = tf.int64 if self.vocabulary.dtype == "int64" else tf.string
        specs.setdefault(self.id_feature, tf.TensorSpec([None], dtype, name=self.id_feature))
        return specs

    def call(self, features: Mapping[str, Any], training: bool | None = None) -> tf.Tensor:
        ids = tf.reshape(features[self.id_feature], [-1])
        factors = tf.gather(self.factors, self.lookup(ids)) * self.factor_scale
        return tf.concat([self.tower(features, training=training) * self.scale, factors], 1)

    def embed(self, data: TableLike, *, batch_size: int = 8192,
              verbose: bool | str = "auto") -> np.ndarray:
        """The joined embedding of every row of a table (see ``Tower.embed``)."""
        return joined_embedding(self.tower, self.lookup, self.factors, self.id_feature, data,
                                scale=self.scale, factor_scale=self.factor_scale,
                                batch_size=batch_size, verbose=verbose)

    def get_config(self) -> dict[str, Any]:
        """The settings; the factors are weights, not config (a clone starts at zeros)."""
        return {"tower": tf.keras.utils.serialize_keras_object(self.tower),
                "vocabulary": self.vocabulary.to_dict(), "dim": int(self.factors.shape[1]),
                "scale": self.scale, "factor_scale": self.factor_scale, "name": self.name}

    def get_build_config(self) -> None:
        return None  # as Tower's: built on first call

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> JoinedTower:
        settings = dict(config)
        tower = tf.keras.utils.deserialize_keras_object(settings.pop("tower"),
                                                        custom_objects=custom_objects)
        vocabulary = Vocabulary.from_dict(settings.pop("vocabulary"))
        factors = np.zeros((vocabulary.size, settings.pop("dim")), np.float32)
        return cls(tower, vocabulary, factors, **settings)


def joined_embedding(tower: Any, lookup: Any, factors: Any, id_feature: str, data: TableLike,
                     *, scale: float = 1.0, factor_scale: float = 1.0, batch_size: int = 8192,
                     verbose: bool | str = "auto") -> np.ndarray:
    """``tower``'s embedding of each row of ``data`` (times ``scale``) beside its id's row
    of ``factors`` (a table or a variable, rows looked up by ``lookup``; times
    ``factor_scale``): :meth:`JoinedTower.embed`, which reads only those rows of the
    table (no copy of a table of every user)."""
    ids = to_table(data, argument="data", columns=[id_feature])[id_feature]
    rows = lookup(tf.constant(ids)).numpy()
    inner = tower.embed(data, batch_size=batch_size, verbose=verbose)
    picked = (tf.gather(factors, rows).numpy() if isinstance(factors, tf.Variable)
              else factors[rows])
    return np.concatenate([inner * scale, picked * factor_scale], axis=1)


def factorise(data: Data, trained: Trained, seed: int) -> Any:
    """An ImplicitALS of the log the towers learned from, as large as their embeddings
    (the trial's parameters when they were warm-started, else the defaults)."""
    from tfrs_kit.baselines import ImplicitALS

    s = trained.settings
    c = data.columns
    return ImplicitALS(factors=s.embedding_dim, regularization=s.warm_regularization,
                       alpha=s.warm_alpha, seed=seed).fit(
        data.events(s), user_id=c.user_id, item_id=c.item_id)


def choose_weights(data: Data, trained: Trained, validation: pd.DataFrame, *, metric: str,
                   seed: int, factorisation: bool = True,
                   deadline: float = math.inf) -> tuple[Blend, Any]:
    """The weights that score best on ``validation``: the factorisation's (one of
    :data:`WEIGHTS`, without the popularity), then the popularity's (one of
    :data:`POPULARITY_WEIGHTS`, at that factorisation weight) and its window (one of
    :data:`WINDOWS`): every third popularity weight on every window, then, if
    ``deadline`` (``time.monotonic()``) leaves time for them and for
    :func:`blend_model` (taken to last as long as this function's setup), the other
    weights on the best window.

    The weights are compared on the same users, so fewer suffice than to score a
    trial: at most 5,000, drawn at random, and fewer for a large catalogue (about
    50 million scores per weight).

    Args:
        data: The log ``trained`` learned from (the validation slice left out).
        trained: The chosen trial's model.
        factorisation: Try the factorisation (needs ``implicit``); without it, only
            the popularity's weight is chosen.
        deadline: When the fine weights are left out.

    Returns:
        The weights, and the factorisation they were chosen with (``None`` without).
    """
    started = time.monotonic()
    als = factorise(data, trained, seed) if factorisation else None
    vocabulary = trained.model.query_tower.vocabularies[data.columns.item_id]
    sources = Sources(
        model=trained.model, columns=data.columns, factors=_factor_tables(data, trained, als),
        queries=data.queries(trained.settings), candidates=data.candidates(trained.settings),
        known=data, windows=_windows(data),
        popularity=lambda window: _popularity(data, trained.settings, vocabulary, window))
    return choose(sources, validation, metric=metric, seed=seed, deadline=deadline,
                  started=started), als


@dataclasses.dataclass(frozen=True)
class Sources:
    """What the blend's weights are chosen from, however it was read (a log in memory, or
    prepared shards).

    Attributes:
        model: The towers' two-tower model.
        columns: The log's columns.
        factors: The users' and the items' factor tables in the model's vocabularies'
            index order (``None``: no factorisation).
        queries: One row per user to score: the query tower's features.
        candidates: One row per candidate: the candidate tower's features.
        known: Whose log is masked when scoring (the items each user has seen).
        windows: The popularity's windows tried.
        popularity: ``window -> [items' vocabulary size, 1]``: the standardised log
            counts of the latest ``window`` share of the events.
    """

    model: Any
    columns: Columns
    factors: tuple[np.ndarray, np.ndarray] | None
    queries: pd.DataFrame
    candidates: pd.DataFrame
    known: Data
    windows: tuple[float, ...]
    popularity: Callable[[float], np.ndarray]


def joined_recommender(sources: Sources) -> RecipeRecommender:
    """The recommender of ``sources``' towers beside their factor tables and the
    popularity of every event, unweighted: what the weights are tried on."""
    c = sources.columns
    query, candidate = _joined_embeddings(sources, sources.popularity(1.0), sources.queries)
    return RecipeRecommender.from_embeddings(sources.queries[c.user_id], query,
                                             sources.candidates[c.item_id].to_numpy(),
                                             candidate)


def _joined_embeddings(sources: Sources, popularity: np.ndarray,
                       queries: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings of ``queries`` and of ``sources``' candidates by the joined model
    of ``sources`` beside ``popularity`` (unweighted), as its towers embed them, without
    building its table of every user (only the rows of ``queries`` are read)."""
    c = sources.columns
    vocabularies = sources.model.query_tower.vocabularies
    users, items = vocabularies[c.user_id], vocabularies[c.item_id]
    item_table = (popularity if sources.factors is None
                  else np.concatenate([sources.factors[1], popularity], 1))
    return (joined_embedding(sources.model.query_tower, users.lookup_layer(),
                             _UserRows(None if sources.factors is None else sources.factors[0]),
                             users.name, queries, verbose=False),
            joined_embedding(sources.model.candidate_tower, items.lookup_layer(), item_table,
                             items.name, sources.candidates, verbose=False))


class _UserRows:
    """The users' joined table (their factors, then a column of ones: what
    :func:`_join_columns` makes), read by rows only."""

    def __init__(self, factors: np.ndarray | None) -> None:
        self.factors = factors

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        ones = np.ones((len(rows), 1), np.float32)
        return ones if self.factors is None else np.concatenate([self.factors[rows], ones], 1)


def choose(sources: Sources, validation: pd.DataFrame, *, metric: str, seed: int,
           deadline: float = math.inf, started: float | None = None,
           joined: RecipeRecommender | None = None) -> Blend:
    """:func:`choose_weights`' choice on ``sources`` (``started``: when the setup began,
    for the time the final model is taken to need; default now; ``joined``: their
    :func:`joined_recommender`, when already computed)."""
    started = time.monotonic() if started is None else started
    c = sources.columns
    joined = joined_recommender(sources) if joined is None else joined
    dims = _dims_of(sources.model, sources.factors)
    spreads = _spreads(joined.query_embeddings, joined.item_embeddings, dims)
    refit = time.monotonic() - started  # about what blend_model will take on the whole log
    validation = _sample_users(validation, c.user_id, seed, choice_users(len(joined.item_ids)))

    def scores(recommender: RecipeRecommender,
               pairs: Sequence[tuple[float, float]]) -> list[float]:
        """The metric at each (factorisation weight, popularity weight)."""
        scaled = {pair: recommender.with_query_scale(_query_scale(dims, spreads, *pair))
                  for pair in pairs}
        result = validation_scores_of(scaled, sources.known, validation, metric)
        return [result[pair][metric] for pair in pairs]

    tried = WEIGHTS if sources.factors is not None else (0.0,)
    by_weight = dict(zip(tried, scores(joined, [(w, 0.0) for w in tried]), strict=True))
    weight = _best(by_weight)
    vocabulary = sources.model.query_tower.vocabularies[c.item_id]
    rows = vocabulary.lookup_layer()(tf.constant(joined.item_ids)).numpy()
    coarse = [p for p in POPULARITY_WEIGHTS[::3] if p]  # every window, whatever the time
    by_window: dict[float, dict[float, float]] = {}
    windowed: dict[float, RecipeRecommender] = {}  # the best window's only: a catalogue each
    for window in sources.windows:
        items = joined.item_embeddings.copy()
        items[:, -1] = sources.popularity(window)[rows, 0]
        windowed[window] = joined.with_item_embeddings(items)
        by_window[window] = {0.0: by_weight[weight], **dict(zip(coarse, scores(
            windowed[window], [(weight, p) for p in coarse]), strict=True))}
        # A tie goes to the wider window.
        best = max(by_window, key=lambda w: (max(by_window[w].values()), w))
        windowed = {best: windowed[best]}
        del items
    window = max(by_window, key=lambda w: (max(by_window[w].values()), w))
    fine = [p for p in POPULARITY_WEIGHTS if p not in by_window[window]]
    if fine and time.monotonic() + refit < deadline:
        by_window[window].update(zip(fine, scores(windowed[window], [
            (weight, p) for p in fine]), strict=True))
    chosen = {p: by_window[window][p] for p in POPULARITY_WEIGHTS if p in by_window[window]}
    return Blend(weight, by_weight, _best(chosen), chosen, window=window,
                 window_scores={w: max(s.values()) for w, s in by_window.items()})


def _sample_users(validation: pd.DataFrame, user_id: str, seed: int,
                  most: int) -> pd.DataFrame:
    """The rows of at most ``most`` of the slice's users, drawn at random."""
    users = validation[user_id].unique()
    if len(users) <= most:
        return validation
    chosen = np.random.default_rng(seed).choice(users, most, replace=False)
    return validation[validation[user_id].isin(chosen)]


def choice_users(items: int) -> int:
    """How many validation users the weights are compared on, for a catalogue of
    ``items``: at most :data:`_VALIDATION_USERS`, fewer for a large catalogue (about
    :data:`_SCORES` scores per weight), never fewer than :data:`_MIN_VALIDATION_USERS`."""
    return max(_MIN_VALIDATION_USERS, min(_VALIDATION_USERS, _SCORES // max(items, 1)))


def spread_sample(queries: pd.DataFrame, seed: int, users: int = _SPREAD_USERS) -> pd.DataFrame:
    """At most ``users`` rows of ``queries``, drawn with ``seed`` and kept in their order:
    the users whose scores measure a blended model's spreads."""
    return queries.iloc[np.sort(np.random.default_rng(seed).permutation(len(queries))[:users])]


def blend_model(data: Data, trained: Trained, blend: Blend, *, seed: int) -> Any:
    """``trained``'s model joined with the popularity of ``data``'s items and (at a
    weight above 0) a factorisation of ``data``, at ``blend``'s weights (the towers'
    and the factorisation's scores each over its spread)."""
    als = factorise(data, trained, seed) if blend.weight else None
    vocabulary = trained.model.query_tower.vocabularies[data.columns.item_id]
    sample = spread_sample(data.queries(trained.settings), seed)
    sources = Sources(
        model=trained.model, columns=data.columns, factors=_factor_tables(data, trained, als),
        queries=sample, candidates=data.candidates(trained.settings), known=data,
        windows=(blend.window,),
        popularity=lambda window: _popularity(data, trained.settings, vocabulary, window))
    return blended(sources, blend)


def blended(sources: Sources, blend: Blend, *,
            spreads: tuple[float, float] | None = None) -> Any:
    """The model of ``sources`` joined at ``blend``'s weights: the towers' and the
    factorisation's scores each over its spread, measured on ``sources.queries`` (a
    sample of the users) against every candidate unless ``spreads`` gives them; the
    popularity over ``blend.window``. The model keeps the factor tables it joined,
    unweighted, as ``factor_tables_`` (``None`` without them): where an update's
    factorisation goes on from."""
    popularity = sources.popularity(blend.window)
    dims = _dims_of(sources.model, sources.factors)
    if spreads is None:
        spreads = _spreads(*_joined_embeddings(sources, popularity, sources.queries), dims)
    scale = _query_scale(dims, spreads, blend.weight, blend.popularity)
    queries, tables = _with_popularity(sources, popularity)
    queries *= scale[dims[0]:]  # a new table: scaled in place, not copied
    joined = _joined_model(sources.model, sources.columns, (queries, tables),
                           scale=float(scale[0]))
    joined.factor_tables_ = sources.factors
    return joined


def _best(scores: Mapping[float, float]) -> float:
    """The best-scoring weight; a tie goes to the smaller."""
    return max(scores, key=lambda w: (scores[w], -w))


def _dims(trained: Trained, als: Any) -> tuple[int, int]:
    """The widths of the towers' part and of the factorisation's (0 without one)."""
    return (trained.model.candidate_tower.output_dim,
            0 if als is None else trained.settings.embedding_dim)


def _dims_of(model: Any, factors: tuple[np.ndarray, np.ndarray] | None) -> tuple[int, int]:
    """The widths of ``model``'s towers' part and of the factor tables' (0 without)."""
    return model.candidate_tower.output_dim, 0 if factors is None else factors[0].shape[1]


def _query_scale(dims: tuple[int, int], spreads: tuple[float, float], weight: float,
                 popularity: float) -> np.ndarray:
    """Per query column: the towers' over their spread, the factorisation's at ``weight``
    over its spread, the popularity column at ``popularity``."""
    return np.concatenate([np.full(dims[0], 1.0 / spreads[0]),
                           np.full(dims[1], weight / spreads[1]),
                           [popularity]]).astype(np.float32)


def _joined(data: Data, trained: Trained, als: Any, *, scale: float = 1.0,
            tables: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """The two-tower model of joined towers: ``trained``'s towers (the query's times
    ``scale``) beside the factor tables (by default :func:`_tables`, unweighted)."""
    if tables is None:
        tables = _tables(data, trained, als)
    return _joined_model(trained.model, data.columns, tables, scale=scale)


def _joined_model(model: Any, c: Columns, tables: tuple[np.ndarray, np.ndarray], *,
                  scale: float = 1.0) -> Any:
    """``model``'s towers (the query's times ``scale``) beside the users' and the items'
    tables (rows in the vocabularies' index order)."""
    from tfrs_kit.retrieval import TwoTowerRetrieval

    vocabularies = model.query_tower.vocabularies
    joined = TwoTowerRetrieval(
        JoinedTower(model.query_tower, vocabularies[c.user_id], tables[0], scale=scale,
                    name="query_blend"),
        JoinedTower(model.candidate_tower, vocabularies[c.item_id], tables[1],
                    name="candidate_blend"),
        item_id=model.candidate_id)
    joined.vocabularies_ = getattr(model, "vocabularies_", None)  # what Recipe.save writes
    return joined


def _tables(data: Data, trained: Trained, als: Any, *,
            window: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The users' and the items' factor tables in vocabulary order: ``als``'s factors
    (when given), then one column: 1 for every user (an unknown one too), each item's
    :func:`_popularity`."""
    vocabularies = trained.model.query_tower.vocabularies
    popularity = _popularity(data, trained.settings, vocabularies[data.columns.item_id],
                             window)
    factors = _factor_tables(data, trained, als)
    return _join_columns(factors, popularity, vocabularies[data.columns.user_id].size)


def _factor_tables(data: Data, trained: Trained,
                   als: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``als``'s users' and items' factors in the vocabularies' index order (``None``
    without ``als``)."""
    if als is None:
        return None
    c = data.columns
    vocabularies = trained.model.query_tower.vocabularies
    return (_table(vocabularies[c.user_id], als.user_ids_, als.user_factors_),
            _table(vocabularies[c.item_id], als.item_ids_, als.item_factors_))


def _with_popularity(sources: Sources,
                     popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sources``' factor tables with the last column: 1 for every user, each item's
    ``popularity``."""
    users = sources.model.query_tower.vocabularies[sources.columns.user_id].size
    return _join_columns(sources.factors, popularity, users)


def _join_columns(factors: tuple[np.ndarray, np.ndarray] | None, popularity: np.ndarray,
                  users: int) -> tuple[np.ndarray, np.ndarray]:
    ones = np.ones((users, 1), np.float32)
    if factors is None:
        return ones, popularity
    return np.concatenate([factors[0], ones], 1), np.concatenate([factors[1], popularity], 1)


def _windows(data: Data) -> tuple[float, ...]:
    """:data:`WINDOWS`, or all the events only when the log has no time."""
    return WINDOWS if data.columns.timestamp is not None else (1.0,)


def _popularity(data: Data, settings: Any, vocabulary: Vocabulary,
                window: float) -> np.ndarray:
    """``[vocabulary.size, 1]``: each item's log count among the latest ``window`` share
    of the events the towers learned from, standardised over the vocabulary."""
    c = data.columns
    events = data.events(settings)
    if window < 1.0 and c.timestamp is not None:
        events = events.sort_values(c.timestamp, kind="stable").tail(
            latest_rows(window, len(events)))
    counts = events[c.item_id].value_counts()
    return standardised_log_counts(_table(vocabulary, counts.index.to_numpy(),
                                          counts.to_numpy(np.float32)[:, None]))


def latest_rows(window: float, rows: int) -> int:
    """The events of the latest ``window`` share of ``rows`` (at least one)."""
    # Rounded first: 0.07 * 100 is 7.000000000000001 in floating point.
    return max(1, math.ceil(round(window * rows, 6)))


def standardised_log_counts(counts: np.ndarray) -> np.ndarray:
    """``[n, 1]`` counts (in vocabulary order, 0 for the unknown row) as the popularity
    column: their ``log1p``, standardised over the vocabulary."""
    table = np.log1p(np.asarray(counts, np.float32))
    return ((table - table.mean()) / max(float(table.std()), 1e-6)).astype(np.float32)


def _table(vocabulary: Vocabulary, ids: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``factors`` (one row per id) placed at the ids' vocabulary indices; zeros elsewhere."""
    table = np.zeros((vocabulary.size, factors.shape[1]), np.float32)
    rows = vocabulary.lookup_layer()(tf.constant(ids)).numpy()
    known = rows > 0
    table[rows[known]] = factors[known]
    return table


def _recommender(data: Data, settings: Any, model: Any) -> RecipeRecommender:
    c = data.columns
    return RecipeRecommender(model, queries=data.queries(settings),
                             items=data.candidates(settings), user_id=c.user_id,
                             item_id=c.item_id)


def _spreads(queries: np.ndarray, items: np.ndarray,
             dims: tuple[int, int]) -> tuple[float, float]:
    """The standard deviations of the towers' scores (the first ``dims[0]`` columns) and
    the factorisation's (the next ``dims[1]``) over the catalogue, for a sample of the
    queries; 1 for a constant or absent part."""
    sample = queries[np.random.default_rng(0).permutation(len(queries))[:_SPREAD_USERS]]
    parts = (slice(0, dims[0]), slice(dims[0], sum(dims)))
    spreads = [_std_of_product(sample[:, part], items[:, part]) for part in parts]
    return tuple(s if s > 0 else 1.0 for s in spreads)  # type: ignore[return-value]


def _std_of_product(queries: np.ndarray, items: np.ndarray) -> float:
    """``np.std(queries @ items.T)``, about 4 million scores at a time (the
    whole matrix of a large catalogue would not fit in memory)."""
    if not queries.size or not items.size:
        return 0.0
    total = np.zeros(2)
    step = max(1, 4_000_000 // max(len(items), 1))
    for start in range(0, len(queries), step):
        scores = (queries[start:start + step] @ items.T).astype(np.float64)
        total += (scores.sum(), np.square(scores).sum())
    count = len(queries) * len(items)
    mean = total[0] / count
    return float(np.sqrt(max(total[1] / count - mean * mean, 0.0)))
