"""A blend with a factorisation: the two-tower scores plus iALS's, weighed on the validation slice.

Two models of different families make different mistakes: an implicit-feedback
ALS factorisation is strong on co-occurrence, the softmax-trained towers on
order, content and recency. Their scores, each divided by its spread over the
catalogue, are added with a weight chosen on the validation slice (weight 0
keeps the towers alone). The blend is still one dot product: each side's
embedding is the tower's beside the factorisation's (:class:`JoinedTower`), so
it serves from the same index as any two-tower model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._data import TableLike, to_table
from tfrs_kit._vocabulary import Vocabulary
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import Blend
from tfrs_kit.recipe._training import Data, Trained, validation_scores

__all__ = ["WEIGHTS", "Blend", "JoinedTower", "blend_model", "choose_weight"]

#: The factorisation's weights tried on the validation slice (0: the towers alone; 5: the
#: factorisation all but alone, for towers the budget left undertrained).
WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
_SPREAD_USERS = 2_000  # users whose scores measure a model's spread
_VALIDATION_USERS = 5_000  # the most validation users the weights are compared on


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
        ids = to_table(data, argument="data", columns=[self.id_feature])[self.id_feature]
        rows = self.lookup(tf.constant(ids)).numpy()
        inner = self.tower.embed(data, batch_size=batch_size, verbose=verbose)
        return np.concatenate([inner * self.scale,
                               self.factors.numpy()[rows] * self.factor_scale], axis=1)

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


def factorise(data: Data, trained: Trained, seed: int) -> Any:
    """An ImplicitALS of the log the towers learned from, as large as their embeddings
    (the trial's parameters when they were warm-started, else the defaults)."""
    from tfrs_kit.baselines import ImplicitALS

    s = trained.settings
    c = data.columns
    return ImplicitALS(factors=s.embedding_dim, regularization=s.warm_regularization,
                       alpha=s.warm_alpha, seed=seed).fit(
        data.events(s), user_id=c.user_id, item_id=c.item_id)


def choose_weight(data: Data, trained: Trained, validation: pd.DataFrame, *, metric: str,
                  seed: int) -> Blend:
    """The factorisation's weight (one of :data:`WEIGHTS`) that scores best on ``validation``
    (at most 5,000 of its users, drawn at random: the weights are compared on the same
    users, so fewer suffice than to score a trial).

    Args:
        data: The log ``trained`` learned from (the validation slice left out).
        trained: The chosen trial's model.
    """
    model = _joined(data, trained, factorise(data, trained, seed))
    joined = _recommender(data, trained.settings, model)
    dims = (trained.model.candidate_tower.output_dim, trained.settings.embedding_dim)
    spreads = _spreads(joined.query_embeddings, joined.item_embeddings, dims[0])
    users = validation[data.columns.user_id].unique()
    if len(users) > _VALIDATION_USERS:
        chosen = np.random.default_rng(seed).choice(users, _VALIDATION_USERS, replace=False)
        validation = validation[validation[data.columns.user_id].isin(chosen)]
    scores = {}
    for weight in WEIGHTS:
        scale = np.repeat([1.0 / spreads[0], weight / spreads[1]], dims).astype(np.float32)
        scores[weight] = validation_scores(joined.with_query_scale(scale), data, validation,
                                           metric)[metric]
    best = max(scores, key=lambda w: (scores[w], -w))  # a tie goes to the smaller weight
    return Blend(best, scores)


def blend_model(data: Data, trained: Trained, *, weight: float, seed: int) -> Any:
    """``trained``'s model joined with a factorisation of ``data``, the factorisation's
    scores at ``weight`` beside the towers' (each over its spread)."""
    model = _joined(data, trained, factorise(data, trained, seed))
    queries = data.queries(trained.settings)
    sample = np.random.default_rng(seed).permutation(len(queries))[:_SPREAD_USERS]
    spreads = _spreads(model.query_tower.embed(queries.iloc[np.sort(sample)], verbose=False),
                       model.candidate_tower.embed(data.candidates(trained.settings),
                                                   verbose=False),
                       trained.model.candidate_tower.output_dim)
    return _joined(data, trained, None, scales=(1.0 / spreads[0], weight / spreads[1]),
                   tables=(model.query_tower.factors.numpy(),
                           model.candidate_tower.factors.numpy()))


def _joined(data: Data, trained: Trained, als: Any, *, scales: tuple[float, float] = (1.0, 1.0),
            tables: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """The two-tower model of joined towers: ``als``'s factors (or ``tables``) beside
    ``trained``'s towers, the query side's parts multiplied by ``scales``."""
    from tfrs_kit.retrieval import TwoTowerRetrieval

    model, c = trained.model, data.columns
    vocabularies = model.query_tower.vocabularies
    if tables is None:
        tables = (_table(vocabularies[c.user_id], als.user_ids_, als.user_factors_),
                  _table(vocabularies[c.item_id], als.item_ids_, als.item_factors_))
    return TwoTowerRetrieval(
        JoinedTower(model.query_tower, vocabularies[c.user_id], tables[0], scale=scales[0],
                    factor_scale=scales[1], name="query_blend"),
        JoinedTower(model.candidate_tower, vocabularies[c.item_id], tables[1],
                    name="candidate_blend"),
        candidate_id=model.candidate_id)


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


def _spreads(queries: np.ndarray, items: np.ndarray, dim: int) -> tuple[float, float]:
    """The standard deviations of the two parts' scores (the first ``dim`` columns and the
    rest) over the catalogue, for a sample of the queries; 1 for a constant part."""
    sample = queries[np.random.default_rng(0).permutation(len(queries))[:_SPREAD_USERS]]
    spreads = [float(np.std(sample[:, part] @ items[:, part].T))
               for part in (slice(0, dim), slice(dim, None))]
    return tuple(s if s > 0 else 1.0 for s in spreads)  # type: ignore[return-value]
