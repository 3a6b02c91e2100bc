"""The Recipe's blend with a factorisation and the items' popularity: scores added, served by
one index."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.recipe._blend import (
    POPULARITY_WEIGHTS,
    WEIGHTS,
    WINDOWS,
    JoinedTower,
    blend_model,
    choose_weights,
)
from tfrs_kit.recipe._inputs import Columns, attribute_table
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import Blend
from tfrs_kit.recipe._settings import Settings
from tfrs_kit.recipe._training import Data, train_final, validation_scores


def _log(num_users=40, num_items=30, per_user=8, seed=0):
    """Two taste groups: even users like even items, odd users odd items."""
    rng = np.random.default_rng(seed)
    rows = [(f"u{user}", f"i{item}", t) for user in range(num_users)
            for t, item in enumerate(rng.choice(np.arange(user % 2, num_items, 2),
                                                size=per_user, replace=False))]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def _data(log):
    return Data(log=log.reset_index(drop=True),
                items=attribute_table(log, "item_id", [], None, argument="items"),
                users=attribute_table(log, "user_id", [], None, argument="users"),
                columns=Columns(tk.Schema(), "history"), max_history=10)


def _top(scores, k=5):
    return np.sort(np.argsort(-scores, axis=1)[:, :k], axis=1)


def test_joined_towers_add_the_two_models_scores_at_their_weights():
    vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b", "b"],
                                         "item_id": ["x", "y", "z"]})
    tf.keras.utils.set_random_seed(0)
    query = tk.Tower(vocabs, features=["user_id"], output_dim=4)
    candidate = tk.Tower(vocabs, features=["item_id"], output_dim=4)
    rng = np.random.default_rng(0)
    users = {"a": rng.normal(size=3), "b": rng.normal(size=3)}
    items = {"x": rng.normal(size=3), "y": rng.normal(size=3)}  # "z" has no factors

    def table(vocabulary, factors):  # row 0 is the unknown id; tokens follow
        rows = np.zeros((len(vocabulary.tokens) + 1, 3), np.float32)
        for position, token in enumerate(vocabulary.tokens):
            rows[position + 1] = factors.get(token, 0.0)
        return rows

    joined_query = JoinedTower(query, vocabs["user_id"], table(vocabs["user_id"], users),
                               scale=2.0, factor_scale=0.5)
    joined_candidate = JoinedTower(candidate, vocabs["item_id"],
                                   table(vocabs["item_id"], items))
    ids = {"user_id": ["a", "b", "new"]}
    scores = joined_query.embed(ids) @ joined_candidate.embed({"item_id": ["x", "y", "z"]}).T
    towers = query.embed(ids) @ candidate.embed({"item_id": ["x", "y", "z"]}).T
    factors = np.array([[users.get(u, np.zeros(3)) @ items.get(i, np.zeros(3))
                         for i in "xyz"] for u in ("a", "b", "new")])
    np.testing.assert_allclose(scores, 2.0 * towers + 0.5 * factors, rtol=1e-5, atol=1e-6)
    called = joined_query({"user_id": tf.constant(["a", "b", "new"])}).numpy()
    np.testing.assert_allclose(called, joined_query.embed(ids), rtol=1e-6)
    assert set(joined_query.input_signature()) == {"user_id"}
    # The config round-trips (the factors are weights: a clone starts at zeros).
    model = tk.TwoTowerRetrieval(joined_query, joined_candidate)
    clone = tk.TwoTowerRetrieval.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert isinstance(clone.query_tower, JoinedTower) and clone.query_tower.scale == 2.0
    assert not clone.query_tower.factors.numpy().any()


def test_blend_weights_move_the_ranking_from_the_towers_to_the_factorisation():
    pytest.importorskip("implicit")
    log = _log()
    data = _data(log)
    settings = Settings(history="none", embedding_dim=8, epochs=3, batch_size=32)
    trained = train_final(data, settings, epochs=3, seed=0)
    towers = RecipeRecommender(trained.model, queries=data.queries(settings),
                               items=data.candidates(settings), user_id="user_id",
                               item_id="item_id")
    als = tk.baselines.ImplicitALS(factors=8, regularization=settings.warm_regularization,
                                   alpha=settings.warm_alpha, seed=0).fit(log)
    users = als.user_ids_
    columns = pd.Index(towers.item_ids).get_indexer(als.item_ids_)
    for weight, expected in ((0.0, towers.score(users)[:, columns]),
                             (1e4, als.score(users))):
        model = blend_model(data, trained, Blend(weight, {}), seed=0)
        blended = RecipeRecommender(model, queries=data.queries(settings),
                                    items=data.candidates(settings), user_id="user_id",
                                    item_id="item_id")
        np.testing.assert_array_equal(_top(blended.score(users)[:, columns]), _top(expected))


def test_the_weight_is_the_best_on_validation_and_zero_is_the_towers_alone():
    pytest.importorskip("implicit")
    log = _log(seed=1)
    train, validation = tk.evaluation.per_user_temporal_split(log, test_fraction=0.25)
    data = _data(train)
    settings = Settings(history="none", embedding_dim=8, epochs=2, batch_size=32)
    trained = train_final(data, settings, epochs=2, seed=0)
    blend, als = choose_weights(data, trained, validation, metric="ndcg@10", seed=0)
    assert als.user_factors_.shape[1] == settings.embedding_dim
    assert tuple(blend.scores) == WEIGHTS and tuple(blend.popularity_scores) == POPULARITY_WEIGHTS
    assert blend.scores[blend.weight] == max(blend.scores.values())
    assert blend.popularity_scores[0.0] == blend.scores[blend.weight]
    assert blend.score == blend.popularity_scores[blend.popularity] == max(
        blend.popularity_scores.values())
    alone = RecipeRecommender(trained.model, queries=data.queries(settings),
                              items=data.candidates(settings), user_id="user_id",
                              item_id="item_id")
    assert blend.scores[0.0] == pytest.approx(
        validation_scores(alone, data, validation, "ndcg@10")["ndcg@10"], abs=1e-9)


def _popular_log(seed=0):
    """Users pick items at random but item k is k + 1 times as likely as item 0."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, 21, dtype=float)
    rows = [(f"u{user}", f"i{item}", t) for user in range(60)
            for t, item in enumerate(rng.choice(20, size=6, replace=False,
                                                p=weights / weights.sum()))]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def _one_epoch(log):
    """The log split for validation, and one epoch of id towers on the rest."""
    train, validation = tk.evaluation.per_user_temporal_split(log, test_fraction=0.25)
    data = _data(train)
    settings = Settings(history="none", embedding_dim=8, epochs=1, batch_size=32)
    return train, validation, data, train_final(data, settings, epochs=1, seed=0)


def _blended(data, trained, blend):
    return RecipeRecommender(blend_model(data, trained, blend, seed=0),
                             queries=data.queries(trained.settings),
                             items=data.candidates(trained.settings), user_id="user_id",
                             item_id="item_id")


def test_the_popularity_weight_ranks_by_count_and_is_chosen_without_implicit():
    train, validation, data, trained = _one_epoch(_popular_log())
    # At a weight far above the towers' spread, every user's ranking is the log's counts.
    blended = _blended(data, trained, Blend(0.0, {}, 1e4))
    counts = train["item_id"].value_counts().reindex(blended.item_ids).fillna(0).to_numpy()
    top = np.argsort(-blended.score(["u0", "u1", "someone new"]), axis=1)[:, :5]
    assert (np.diff(counts[top], axis=1) <= 0).all()  # in the order of the counts
    assert set(counts[top[0]]) == set(np.sort(counts)[-5:])
    # Without the factorisation only the towers' weight 0 is scored, then the popularity's.
    blend, als = choose_weights(data, trained, validation, metric="recall@10", seed=0,
                                factorisation=False)
    assert tuple(blend.scores) == (0.0,) and blend.weight == 0.0 and als is None
    assert blend.score == max(blend.popularity_scores.values())
    assert blend.popularity > 0  # one epoch of towers: the crowd predicts better
    assert blend.describe() == f" + popularity x{blend.popularity:g}"
    # Past the deadline every window is tried at every third weight only.
    late, _ = choose_weights(data, trained, validation, metric="recall@10", seed=0,
                             factorisation=False, deadline=time.monotonic())
    assert tuple(late.popularity_scores) == POPULARITY_WEIGHTS[::3]
    assert tuple(late.window_scores) == WINDOWS
    assert late.score == max(late.window_scores.values()) <= blend.score
    assert all(blend.popularity_scores[p] == s for p, s in late.popularity_scores.items()
               if late.window == blend.window)


def _trend_log(seed=0):
    """Each user's events in time order: 5 of items 0-29 (the old favourites), then 3 of
    items 30-49 (what everyone takes lately)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(80):
        items = [*rng.choice(30, size=5, replace=False),
                 *rng.choice(np.arange(30, 50), size=3, replace=False)]
        rows += [(f"u{user}", f"i{item}", 100 * t + user) for t, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_the_popularity_window_counts_the_latest_events_and_is_chosen_when_they_predict():
    train, validation, data, trained = _one_epoch(_trend_log())
    latest = train.sort_values("timestamp").tail(int(np.ceil(0.3 * len(train))))
    blended = _blended(data, trained, Blend(0.0, {}, 1e4, window=0.3))
    counts = latest["item_id"].value_counts().reindex(blended.item_ids).fillna(0).to_numpy()
    top = np.argsort(-blended.score(["u0"]), axis=1)[0, :3]
    assert counts[top[0]] == counts.max() and (np.diff(counts[top]) <= 0).all()
    blend, _ = choose_weights(data, trained, validation, metric="recall@10", seed=0,
                              factorisation=False)
    assert tuple(blend.window_scores) == WINDOWS and blend.window < 1.0
    assert blend.window_scores[blend.window] == blend.score > blend.window_scores[1.0]
    assert f"popularity(latest {blend.window:.0%})" in blend.describe()


def test_a_blended_recipe_is_reported_and_its_index_serves_what_it_scores(tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("implicit")
    from tfrs_kit.recipe import _blend

    monkeypatch.setattr(_blend, "WEIGHTS", (0.5,))  # a blend whatever the slice says
    monkeypatch.setattr(_blend, "POPULARITY_WEIGHTS", (0.3,))
    log = _log(num_users=60, seed=2)
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1,
                       verbose=False).fit(log)
    blend = recipe.report.blend
    assert blend is not None and blend.weight == 0.5 and tuple(blend.scores) == (0.5,)
    assert blend.popularity == 0.3 and recipe.report.validation_score == blend.score
    assert "blend with iALS at weight 0.5" not in "\n".join(recipe.report.reasons)  # no choice
    assert str(recipe.report).startswith(
        f"Recipe: {recipe.settings.describe()} + iALS x0.5 + popularity x0.3")
    assert isinstance(recipe.model.query_tower, JoinedTower)
    queries = recipe.queries().head(4)
    expected = recipe.as_recommender().score(queries["user_id"].to_numpy())
    top = np.asarray(recipe.candidates()["item_id"])[np.argsort(-expected, axis=1)[:, :5]]
    index = recipe.build_index(k_max=5)
    np.testing.assert_array_equal(index.recommend(queries, k=5).ids, top)
    index.save(tmp_path / "index")
    loaded = tk.load_index(tmp_path / "index")
    np.testing.assert_array_equal(loaded.recommend(queries, k=5).ids, top)


def test_blend_false_keeps_plain_towers_and_a_non_bool_is_a_type_error():
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, blend=False,
                       verbose=False).fit(_log())
    assert recipe.report.blend is None
    assert isinstance(recipe.model.query_tower, tk.Tower)
    with pytest.raises(TypeError, match=r"`blend` must be True or False\. Received: blend=1"):
        tk.Recipe(blend=1)


@pytest.mark.parametrize("with_factors", [True, False])
def test_row_wise_joined_embeddings_equal_the_whole_table_joined_models(with_factors):
    from tfrs_kit.recipe._blend import (
        Sources,
        _joined_model,
        _query_scale,
        _spreads,
        _with_popularity,
        blended,
        joined_recommender,
    )

    log = _log(seed=3)
    data = _data(log)
    settings = Settings(history="none", embedding_dim=8, epochs=1, batch_size=32)
    model = train_final(data, settings, epochs=1, seed=0).model
    vocabularies = model.query_tower.vocabularies
    rng = np.random.default_rng(0)
    factors = (rng.normal(size=(vocabularies["user_id"].size, 3)).astype(np.float32),
               rng.normal(size=(vocabularies["item_id"].size, 3)).astype(np.float32))
    popularity = rng.normal(size=(vocabularies["item_id"].size, 1)).astype(np.float32)
    queries = data.queries(settings).iloc[::-3]  # some users, out of the table's order
    sources = Sources(model=model, columns=data.columns,
                      factors=factors if with_factors else None, queries=queries,
                      candidates=data.candidates(settings), known=data, windows=(1.0,),
                      popularity=lambda window: popularity)
    # The reference: a joined model holding the table of every user, embedding its rows.
    whole = _joined_model(model, data.columns, _with_popularity(sources, popularity))
    expected = RecipeRecommender(whole, queries=queries, items=sources.candidates,
                                 user_id="user_id", item_id="item_id")
    joined = joined_recommender(sources)
    np.testing.assert_array_equal(joined.query_embeddings, expected.query_embeddings)
    np.testing.assert_array_equal(joined.item_embeddings, expected.item_embeddings)
    # The blended model: the spreads measured on those rows, the users' table scaled.
    blend = Blend(0.5 if with_factors else 0.0, {}, 0.3)
    dims = (model.candidate_tower.output_dim, 3 if with_factors else 0)
    scale = _query_scale(dims, _spreads(expected.query_embeddings, expected.item_embeddings,
                                        dims), blend.weight, blend.popularity)
    users, items = _with_popularity(sources, popularity)
    reference = _joined_model(model, data.columns, (users * scale[dims[0]:], items),
                              scale=float(scale[0]))
    result = blended(sources, blend)
    np.testing.assert_array_equal(result.query_tower.embed(queries, verbose=False),
                                  reference.query_tower.embed(queries, verbose=False))
    np.testing.assert_array_equal(result.query_tower.factors.numpy(),
                                  reference.query_tower.factors.numpy())
