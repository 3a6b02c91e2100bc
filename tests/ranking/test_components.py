"""The ranker reads the retrieval score's components apart (a blend's towers, iALS, popularity)."""

import itertools

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.ranking._sampling import COMPONENT
from tfrs_kit.ranking._scoring import component_bounds, component_scores

RETRIEVE_K = 8
BOUNDS = (2, 5)  # a 6-wide embedding read as three components: [0:2], [2:5], [5:6]


@pytest.fixture(scope="module")
def setup():
    data = tk.datasets.synthetic(900, num_users=40, num_items=30, seed=1)
    log = data.interactions.sort_values(["timestamp", "item_id"], kind="stable")
    log = log.reset_index(drop=True)
    rank = log.groupby("user_id").cumcount(ascending=False)
    size = log.groupby("user_id")["user_id"].transform("size")
    late = (rank < np.ceil(0.3 * size)).to_numpy()
    vocabs = tk.VocabularyBuilder().fit(log, features={
        "user_id": "categorical", "user_segment": "categorical", "item_id": "categorical",
        "item_genres": "multi"})
    tf.keras.utils.set_random_seed(3)
    retriever = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=6),
                                     tk.Tower(vocabs, features=["item_id"], output_dim=6))
    retriever.fit(log[~late], epochs=2, batch_size=128, seed=0, verbose=0)
    queries = log.loc[~late, ["user_id"]].drop_duplicates(keep="last").merge(data.users,
                                                                        on="user_id")
    tf.keras.utils.set_random_seed(5)
    ranker = tk.Ranker(tk.Tower(vocabs, features=["user_segment"], output_dim=4),
                       tk.Tower(vocabs, features=["item_id", "item_genres"], output_dim=4),
                       loss="listwise", cross_layers=0, hidden_dims=[], retrieval_score=True,
                       components=BOUNDS)
    return dict(retriever=retriever, ranker=ranker, queries=queries.reset_index(drop=True),
                early=log[~late], positives=log[late], items=data.items.reset_index(drop=True))


def _numpy_lists(setup):
    """Each query user's top RETRIEVE_K unseen items (catalogue rows) and the query vector."""
    retriever, items, queries = setup["retriever"], setup["items"], setup["queries"]
    user_vectors = retriever.query_tower.embed(queries)
    scores = user_vectors @ retriever.candidate_tower.embed(items).T
    seen = setup["early"].groupby("user_id")["item_id"].apply(set).to_dict()
    ids = list(items["item_id"])
    out = {}
    for row, user in enumerate(queries["user_id"]):
        order = [i for i in np.argsort(-scores[row], kind="stable") if ids[i] not in seen[user]]
        out[user] = (order[:RETRIEVE_K], scores[row, order[:RETRIEVE_K]], user_vectors[row])
    return out


def _numpy_components(user_vector, item_vectors):
    """``[n, 3]``: the dot product over each span of BOUNDS, standardised over the list."""
    edges = [0, *BOUNDS, len(user_vector)]
    parts = np.stack([item_vectors[:, a:b] @ user_vector[a:b]
                      for a, b in itertools.pairwise(edges)], axis=1)
    return (parts - parts.mean(axis=0)) / parts.std(axis=0)


def test_component_scores_split_the_dot_product_at_the_bounds():
    rng = np.random.default_rng(0)
    queries, candidates = rng.normal(size=(3, 6)), rng.normal(size=(3, 4, 6))
    got = component_scores(tf.constant(queries), tf.constant(candidates), BOUNDS).numpy()
    assert got.shape == (3, 4, 3)
    np.testing.assert_allclose(got[..., 0], np.einsum("bd,bnd->bn", queries[:, :2],
                                                      candidates[:, :, :2]), rtol=1e-5)
    np.testing.assert_allclose(got[..., 2], queries[:, None, 5] * candidates[:, :, 5], rtol=1e-5)
    np.testing.assert_allclose(got.sum(-1), np.einsum("bd,bnd->bn", queries, candidates),
                               rtol=1e-5, atol=1e-6)


def test_component_bounds_are_a_blends_columns():
    class Joined:
        factors = np.zeros((7, 5))  # 4 iALS factors and the popularity column

    class Blend:
        query_tower = Joined()

    assert component_bounds(Blend(), 13) == (8, 12)
    Joined.factors = np.zeros((7, 1))  # the popularity alone
    assert component_bounds(Blend(), 9) == (8,)
    assert component_bounds(object(), 9) == ()


def test_the_lists_carry_each_component_standardised_within_the_list(setup):
    ranker = setup["ranker"]
    lists, _ = ranker._lists(setup["queries"], setup["positives"], retriever=setup["retriever"],
                             candidates=setup["items"], user_id="user_id",
                             retrieve_k=RETRIEVE_K, seen=setup["early"][["user_id", "item_id"]],
                             residual=True)
    expected = _numpy_lists(setup)
    item_vectors = setup["retriever"].candidate_tower.embed(setup["items"])
    users = setup["queries"]["user_id"].to_numpy()[lists.train_rows[::RETRIEVE_K]]
    assert ranker._component_columns == tuple(f"{COMPONENT}_{i}" for i in range(3))
    assert len(users) > 10
    for g, user in enumerate(users):
        order, _, user_vector = expected[user]
        rows = slice(RETRIEVE_K * g, RETRIEVE_K * (g + 1))
        got = np.stack([lists.table[c][rows] for c in ranker._component_columns], axis=1)
        np.testing.assert_allclose(got, _numpy_components(user_vector, item_vectors[order]),
                                   rtol=1e-3, atol=1e-3)


def test_the_cascade_serves_the_numpy_blend_in_memory_and_exported(setup, tmp_path):
    ranker, retriever, items = setup["ranker"], setup["retriever"], setup["items"]
    ranker.fit_lists(setup["queries"], setup["positives"], retriever=retriever,
                     candidates=items, seen=setup["early"][["user_id", "item_id"]],
                     retrieve_k=RETRIEVE_K, epochs=2, batch_size=8, seed=0,
                     validation_fraction=0.0, verbose=False)  # weights (1, 1)
    weights = ranker.output_layer.kernel.numpy()[-3:, 0]
    assert np.abs(weights).min() > 0  # the head reads each component
    users = setup["queries"].iloc[:6].reset_index(drop=True)
    seen = setup["early"].groupby("user_id")["item_id"].apply(list).to_dict()
    exclude = [seen[user] for user in users["user_id"]]
    item_vectors = retriever.candidate_tower.embed(items)
    ids = list(items["item_id"])
    expected, lists = [], _numpy_lists(setup)
    for row, user in enumerate(users["user_id"]):
        order, scores, user_vector = lists[user]
        z = (scores - scores.mean()) / scores.std()
        parts = _numpy_components(user_vector, item_vectors[order])
        head = ranker.score_embeddings(
            tf.constant(np.repeat(ranker.query_tower.embed(users.iloc[[row]]), RETRIEVE_K, 0)),
            tf.constant(ranker.candidate_tower.embed(items.iloc[order])),
            tf.constant(z, tf.float32), None, tf.constant(parts, tf.float32)).numpy()
        expected.append([ids[order[i]] for i in np.argsort(-(z + head), kind="stable")[:4]])
    index = tk.IndexBuilder(k_max=4, backend="brute_force").build(
        retriever, items, ranker=ranker, retrieve_k=RETRIEVE_K)
    assert index.recommend(users, k=4, exclude=exclude).ids.tolist() == expected
    index.save(tmp_path / "cascade")
    assert tk.load_index(tmp_path / "cascade").recommend(
        users, k=4, exclude=exclude).ids.tolist() == expected
    recommender = ranker.cascade(retriever, retrieve_k=RETRIEVE_K).as_recommender(
        setup["early"], users=setup["queries"], items=items)
    scores = recommender.score(np.asarray(users["user_id"]))
    assert [list(recommender.item_ids[np.argsort(-row, kind="stable")[:4]])
            for row in scores] == expected
    # Given the first stage's scores, the cascade re-ranks them the same way.
    first = retriever.query_tower.embed(users) @ item_vectors.T
    for row, user in enumerate(users["user_id"]):
        first[row, np.isin(ids, seen[user])] = -np.inf
    reranked = ranker.cascade(retriever, retrieve_k=RETRIEVE_K).rerank_scores(first, users, items)
    assert [[ids[i] for i in np.argsort(-row, kind="stable")[:4]]
            for row in reranked] == expected
    config = ranker.get_config()
    assert config["components"] == list(BOUNDS)
    assert tk.Ranker.from_config(config).components == BOUNDS


def test_components_refuse_what_they_cannot_do(setup):
    ranker, retriever, items = setup["ranker"], setup["retriever"], setup["items"]
    with pytest.raises(ValueError, match=r"`components` must be increasing"):
        tk.Ranker(ranker.query_tower, ranker.candidate_tower, components=(3, 3))
    with pytest.raises(TypeError, match=r"`components` must be a list"):
        tk.Ranker(ranker.query_tower, ranker.candidate_tower, components="2")
    with pytest.raises(ValueError, match=r"without components to score"):
        ranker.score(setup["queries"], items, retriever=retriever)
    wide = tk.Ranker(ranker.query_tower, ranker.candidate_tower, retrieval_score=True,
                     components=(2, 6), item_id="item_id")
    with pytest.raises(ValueError, match=r"split the retriever's 6-wide embedding"):
        tk.IndexBuilder(k_max=4, backend="brute_force").build(retriever, items, ranker=wide,
                                                              retrieve_k=RETRIEVE_K)


def test_cascade_fit_reads_a_blended_first_stages_components(setup):
    """A first stage whose query tower holds a factor table (a blend) gives the default
    ranker its bounds; ``components=False`` leaves them out."""
    retriever = setup["retriever"]
    log = pd.concat([setup["early"], setup["positives"]])

    class Blend:  # the helper, with a 6-wide embedding read as towers [0:4], iALS, popularity
        def __init__(self, helper):
            self.query_tower = helper.query_tower
            self.candidate_tower = helper.candidate_tower
            self.query_tower.factors = np.zeros((3, 2))

    fitted = tk.Cascade.fit(retriever, log, items=setup["items"], retrieve_k=RETRIEVE_K,
                            epochs=1, first_stage=lambda helper, earlier: Blend(helper))
    plain = tk.Cascade.fit(retriever, log, items=setup["items"], retrieve_k=RETRIEVE_K,
                           epochs=1, components=False,
                           first_stage=lambda helper, earlier: Blend(helper))
    assert fitted.ranker.components == (4, 5)
    assert plain.ranker.components == ()
