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
    with pytest.raises(ValueError, match=r"`served_log`.*item_id"):
        tk.Cascade.fit(retriever, log, served_log=log.drop(columns="item_id"), retrieve_k=5)
    later = log.tail(1).assign(item_id=log["item_id"].iloc[0] * 2)  # an item not in `items`
    assert not data.items["item_id"].isin(later["item_id"]).any()
    with pytest.raises(ValueError, match="`items` must hold one row"):  # served_log's items too
        tk.Cascade.fit(retriever, log, served_log=pd.concat([log, later]), items=data.items,
                       retrieve_k=5)
    with pytest.raises(TypeError, match="`retriever`"):
        tk.Cascade.fit("model", log)


def test_a_cascade_holds_its_ranker_and_retrieve_k(setup):
    data, _, _, cascade, _ = setup
    with pytest.raises(ValueError, match="retrieve_k"):
        tk.IndexBuilder(k_max=5).build(cascade, data.items, retrieve_k=20)
    table = cascade.with_features(pd.DataFrame({"item_id": ["i0", "unknown"]}))
    assert table["item_log_count"][1] == 0.0 and table["item_log_count"][0] > 0


def test_rerank_scores_equal_the_cascades_own_ranking(setup):
    """Given the retriever's own scores, ``rerank_scores`` is the cascade's recommender."""
    data, log, retriever, cascade, _ = setup
    users = _open_users(log, cascade, 6).reset_index(drop=True)
    items = cascade.with_features(data.items)
    recommender = cascade.as_recommender(log, users=users, items=items)
    expected = recommender.score(users["user_id"].to_numpy())
    first = (retriever.query_tower.embed(users, verbose=False)
             @ retriever.candidate_tower.embed(items, verbose=False).T).astype(np.float64)
    seen = log.groupby("user_id")["item_id"].agg(set)
    item_ids = np.asarray(items["item_id"])
    for row, user in enumerate(users["user_id"]):
        first[row, np.isin(item_ids, list(seen[user]))] = -np.inf
    got = cascade.rerank_scores(first, users, items)
    np.testing.assert_array_equal(np.argsort(-got, axis=1, kind="stable")[:, :RETRIEVE_K],
                                  np.argsort(-expected, axis=1, kind="stable")[:, :RETRIEVE_K])
    with pytest.raises(ValueError, match="scores"):
        cascade.rerank_scores(first[:, :3], users, items)


def test_count_items_counts_the_popularity_in_the_log_given(setup):
    data, log, _, cascade, _ = setup
    copy = tk.Cascade(cascade.retriever, cascade.ranker, retrieve_k=RETRIEVE_K)
    assert copy.count_items(data.items, log.iloc[:100]) is copy
    counts = log.iloc[:100]["item_id"].value_counts()
    expected = np.log1p(copy.items_["item_id"].map(counts).fillna(0.0))
    np.testing.assert_allclose(copy.items_["item_log_count"], expected, rtol=1e-6)
    # A known answer: the latest 10% of 10 rows is the last one; the age is the share
    # of the rows since the item's first.
    tiny = pd.DataFrame({"item_id": list("aababbbbbc")})
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"]})
    table = copy.count_items(items, tiny).items_.set_index("item_id")
    assert tk.Cascade.LOG_FEATURES == ("item_log_count", "item_log_recent", "item_age")
    np.testing.assert_allclose(table["item_log_count"], np.log1p([3, 6, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(table["item_log_recent"], np.log1p([0, 0, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(table["item_age"], [1.0, 0.8, 0.1, 0.0], rtol=1e-6)


def test_first_stage_is_what_the_ranker_learns_to_rerank(setup):
    """``first_stage(helper, earlier)`` gets the helper and each user's earlier rows; what
    it returns is the first stage the ranker learns from."""
    data, log, retriever, _, _ = setup
    calls = []

    def first_stage(helper, earlier):
        calls.append((helper, len(earlier)))
        return helper

    fitted = tk.Cascade.fit(retriever, log, items=data.items, retrieve_k=RETRIEVE_K, epochs=1,
                            history=tk.HistoryBuilder(item_id="item_id", max_length=10),
                            ranking_fraction=0.25, first_stage=first_stage)
    (helper, rows), = calls
    later = tk.evaluation.per_user_temporal_split(log, test_fraction=0.25, min_train=1)[1]
    assert fitted.helper_ is helper and helper is not retriever
    assert rows == len(log) - len(later["user_id"])


def test_served_log_is_what_the_ranker_is_served_after(setup, monkeypatch):
    """The ranker learns from ``log``; the items' counts, the users' latest histories and
    the next-item model's retraining are as of ``served_log`` (a longer log)."""
    from tfrs_kit.ranking import _protocol
    from tfrs_kit.ranking._sequence import NextItemModel

    data, log, retriever, _, _ = setup
    refits = []
    monkeypatch.setattr(_protocol, "next_items_for", lambda rows, ids, **k: NextItemModel(
        list(ids), dim=4, blocks=1, max_length=4))  # untrained: the plumbing is tested
    monkeypatch.setattr(_protocol, "refit_next_items",
                        lambda model, rows, **k: refits.append(len(rows)))
    early = log.sort_values("timestamp").iloc[:700]
    fitted = tk.Cascade.fit(retriever, early, served_log=log, items=data.items,
                            history=tk.HistoryBuilder(item_id="item_id", max_length=3),
                            next_items=True, retrieve_k=RETRIEVE_K, epochs=1)
    assert fitted.ranker.next_items is not None and refits == [len(log)]
    counts = log["item_id"].value_counts()  # the whole log's, not the early rows'
    table = fitted.items_.set_index("item_id")
    np.testing.assert_allclose(table["item_log_count"],
                               np.log1p(counts.reindex(table.index).fillna(0)), rtol=1e-6)
    latest = log.sort_values("timestamp", kind="stable").groupby("user_id")["item_id"].apply(
        lambda items: list(items)[-3:])
    users = fitted.users_.set_index("user_id")
    assert len(users) == log["user_id"].nunique()
    for user, items in latest.items():
        assert list(users.loc[user, "history"]) == items
