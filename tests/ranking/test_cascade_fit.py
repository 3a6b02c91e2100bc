"""``tk.Cascade.fit``: the retrieve-then-rank cascade in one call, served as one artifact."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk

RETRIEVE_K = 12


@pytest.fixture(scope="module")
def setup():
    data = tk.datasets.synthetic(1200, num_users=50, num_items=30, seed=0)
    history = tk.HistoryBuilder(item_id="item_id", max_length=10)
    log = data.interactions
    vocabs = tk.VocabularyBuilder().fit(history.transform(log),
                                        features=["user_id", "history", "item_id"])
    tf.keras.utils.set_random_seed(0)
    retriever = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=8),
        tk.Tower(vocabs, features=["item_id"], output_dim=8))
    retriever.fit(history.transform(log), epochs=2, batch_size=256, seed=0, verbose=0)
    cascade = tk.Cascade.fit(retriever, log, items=data.items, users=data.users,
                             history=history, retrieve_k=RETRIEVE_K, epochs=1)
    index = tk.IndexBuilder(k_max=5).build(cascade, data.items)
    return data, log, retriever, cascade, index


def _seen(log, users):
    grouped = log.groupby("user_id")["item_id"].apply(list)
    return [grouped.get(user, []) for user in users["user_id"]]


def test_fit_returns_a_cascade_with_a_trained_ranker(setup):
    data, _, retriever, cascade, _ = setup
    assert isinstance(cascade, tk.Cascade) and cascade.retriever is retriever
    assert cascade.retrieve_k == RETRIEVE_K
    assert (0.0, 1.0) in cascade.ranker.blend_ndcg_  # the blend was chosen on held-out users
    # Users' and items' features, popularity and the history similarity.
    assert {"user_segment", "item_genres", "item_log_count"} <= set(cascade.ranker.features)
    assert cascade.ranker.history_feature == "history"
    assert cascade.helper_ is not retriever
    assert len(cascade.items_) == len(data.items)


def _open_users(log, cascade, count):
    """Users with at least ``RETRIEVE_K`` items they have not seen yet."""
    unseen = len(cascade.items_) - log.groupby("user_id")["item_id"].nunique()
    users = cascade.users_[cascade.users_["user_id"].map(unseen) >= RETRIEVE_K].iloc[:count]
    assert len(users) >= min(count, 4)
    return users


def test_the_served_top_k_is_the_rankers_reranking_of_the_retrievers_top(setup):
    _, log, retriever, cascade, index = setup
    users = _open_users(log, cascade, 8)
    seen = _seen(log, users)
    served = index.recommend(users, k=5, exclude=seen)
    # The in-memory cascade (another implementation) orders the same way.
    scores = cascade.as_recommender(log, users=cascade.users_, items=cascade.items_).score(
        users["user_id"].to_numpy())
    expected = cascade.items_["item_id"].to_numpy()[np.argsort(-scores, axis=1)[:, :5]]
    np.testing.assert_array_equal(served.ids, expected)
    # And every served item is among the retriever's top retrieve_k (its seen items left out).
    queries = retriever.query_embeddings(users)
    items = retriever.candidate_embeddings(cascade.items_)
    ids = cascade.items_["item_id"].to_numpy()
    for row, (query, excluded) in enumerate(zip(queries, seen, strict=True)):
        raw = np.where(np.isin(ids, excluded), -np.inf, items @ query)
        top = set(ids[np.argsort(-raw)[:RETRIEVE_K]])
        assert set(served.ids[row]) <= top


def test_retrieve_k_round_trips_through_save_and_load(setup, tmp_path):
    _, log, _, cascade, index = setup
    assert index.retrieve_k == RETRIEVE_K
    index.save(tmp_path / "cascade")
    metadata = json.loads((tmp_path / "cascade" / "tfrs_kit_index.json").read_text())
    assert metadata["retrieve_k"] == RETRIEVE_K
    loaded = tk.load_index(tmp_path / "cascade")
    assert loaded.retrieve_k == RETRIEVE_K
    users = cascade.users_.iloc[:4]
    np.testing.assert_array_equal(loaded.recommend(users, k=3, exclude=_seen(log, users)).ids,
                                  index.recommend(users, k=3, exclude=_seen(log, users)).ids)


def test_a_cascade_without_its_ranker_is_refused_at_load(setup, tmp_path):
    data, _, retriever, _, _ = setup
    tk.IndexBuilder(k_max=5).build(retriever, data.items).save(tmp_path / "plain")
    metadata_file = tmp_path / "plain" / "tfrs_kit_index.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["retrieve_k"] = RETRIEVE_K  # the metadata of a cascade, a retriever's SavedModel
    metadata_file.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="ranker"):
        tk.load_index(tmp_path / "plain")


def test_the_cascades_explanations(setup):
    _, log, _, cascade, index = setup
    users = _open_users(log, cascade, 3)
    served = index.recommend(users, k=3, exclude=_seen(log, users), explain=True)
    for row in served.explanations:
        for explanation in row:
            assert set(explanation.shares) == {"retrieval", "ranker"}
            assert sum(explanation.shares.values()) == pytest.approx(1.0)
            assert len(explanation.history) == min(3, len(explanation.contributions))


def test_bad_input_is_refused_before_training(setup):
    data, log, retriever, _, _ = setup
    with pytest.raises(ValueError, match="`retrieve_k` must be at most the catalogue"):
        tk.Cascade.fit(retriever, log, items=data.items, retrieve_k=31)
    with pytest.raises(ValueError, match=r"`log` must hold at least .* ranking_fraction"):
        tk.Cascade.fit(retriever, log.head(30), items=data.items, retrieve_k=5)
    with pytest.raises(ValueError, match="`items` must hold one row"):
        tk.Cascade.fit(retriever, log, items=data.items.iloc[1:], retrieve_k=5)
    with pytest.raises(TypeError, match="`retriever`"):
        tk.Cascade.fit("model", log)


def test_a_cascade_holds_its_ranker_and_retrieve_k(setup):
    data, _, _, cascade, _ = setup
    with pytest.raises(ValueError, match="retrieve_k"):
        tk.IndexBuilder(k_max=5).build(cascade, data.items, retrieve_k=20)
    table = cascade.with_features(pd.DataFrame({"item_id": ["i0", "unknown"]}))
    assert table["item_log_count"][1] == 0.0 and table["item_log_count"][0] > 0
