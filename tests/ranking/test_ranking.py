"""The ranking stage and the cascade, each checked against a NumPy reference on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.data._table import to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.ranking import Cascade, Multitask
from tfrs_kit.ranking._lists import blend_ndcg as _blend_ndcg
from tfrs_kit.ranking._model import _ranking_task
from tfrs_kit.ranking._sampling import KIND, LABEL, OFFSET, RETRIEVAL_SCORE, WEIGHT, Examples
from tfrs_kit.ranking._scoring import history_positions, history_similarity


@pytest.fixture(scope="module")
def data():
    return tk.datasets.synthetic(500, num_users=50, num_items=100, seed=3)


@pytest.fixture(scope="module")
def vocabs(data):
    return tk.VocabularyBuilder().fit(
        data.interactions[["user_id", "user_segment", "item_id", "item_year", "item_genres"]])


def _towers(vocabs, query=("user_id",), candidate=("item_id",), dim=4):
    return (tk.Tower(vocabs, features=list(query), output_dim=dim),
            tk.Tower(vocabs, features=list(candidate), output_dim=dim))


@pytest.fixture(scope="module")
def retriever(vocabs):
    tf.keras.utils.set_random_seed(0)
    return tk.TwoTowerRetrieval(*_towers(vocabs, dim=6))  # untrained: random, fixed scores


def _examples(ranker, log, **settings):
    defaults = dict(retriever=None, candidates=None, user_id="user_id", negatives=4,
                    hard_fraction=None, retrieve_k=5, label=None, sample_weight=None, seed=0)
    return ranker._examples(to_table(log), **{**defaults, **settings})


def _batch(vocabs, rows=6, seed=0):
    rng = np.random.default_rng(seed)
    users = list(vocabs["user_id"].tokens)
    items = list(vocabs["item_id"].tokens)
    return {
        "user_id": tf.constant(rng.choice(users, rows)),
        "item_id": tf.constant(rng.choice(items, rows)),
        LABEL: tf.constant(rng.integers(0, 2, rows).astype(np.float32)),
        WEIGHT: tf.constant(rng.uniform(0.5, 2.0, rows).astype(np.float32)),
    }


def test_pointwise_loss_is_weighted_sigmoid_cross_entropy(vocabs):
    ranker = tk.Ranker(*_towers(vocabs), cross_layers=1, hidden_dims=[8])
    batch = _batch(vocabs)
    logits = ranker(batch).numpy().astype(np.float64)
    y, w = batch[LABEL].numpy(), batch[WEIGHT].numpy()
    expected = np.mean(w * (np.logaddexp(0.0, logits) - y * logits))
    assert float(ranker.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


def test_pointwise_loss_with_explicit_labels_is_weighted_squared_error(vocabs):
    ranker = tk.Ranker(*_towers(vocabs), cross_layers=0, hidden_dims=[])
    ranker.task = _ranking_task("pointwise", explicit=True)
    batch = {**_batch(vocabs), LABEL: tf.constant([4.0, 0.0, 3.0, 5.0, 0.0, 1.0])}
    scores = ranker(batch).numpy().astype(np.float64)
    w = batch[WEIGHT].numpy()
    expected = np.mean(w * (scores - batch[LABEL].numpy()) ** 2)
    assert float(ranker.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


def test_listwise_loss_is_a_softmax_over_each_group(vocabs):
    ranker = tk.Ranker(*_towers(vocabs), loss="listwise", cross_layers=2, hidden_dims=[8])
    ranker.group_size_ = 3
    batch = _batch(vocabs, rows=6)
    batch[LABEL] = tf.constant([1.0, 0, 0, 1, 0, 0])
    scores = ranker(batch).numpy().astype(np.float64).reshape(2, 3)
    group_weights = batch[WEIGHT].numpy()[[0, 3]]
    by_hand = [np.log(np.exp(s).sum()) - s[0] for s in scores]  # -log softmax of the positive
    expected = np.sum(group_weights * by_hand) / 2
    assert float(ranker.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)


def test_negatives_avoid_positives_and_hard_ones_come_from_the_retrievers_top(
        data, vocabs, retriever):
    log = data.interactions
    ranker = tk.Ranker(*_towers(vocabs))
    examples = _examples(ranker, log, retriever=retriever, negatives=4, hard_fraction=0.5,
                         retrieve_k=5, seed=1)
    table, group = examples.table, examples.group_size
    assert group == 5 and len(table["item_id"]) == 5 * len(log)
    users = table["user_id"].reshape(-1, group)
    items = table["item_id"].reshape(-1, group)
    kinds = table[KIND].reshape(-1, group)
    np.testing.assert_array_equal(items[:, 0], log["item_id"].to_numpy())
    np.testing.assert_array_equal(users[:, 0], log["user_id"].to_numpy())
    assert (users == users[:, :1]).all()
    np.testing.assert_array_equal(table[LABEL].reshape(-1, group),
                                  np.tile([1.0, 0, 0, 0, 0], (len(log), 1)))
    # The reference: each user's 5 best items by the dot product of the embeddings.
    catalogue = log.drop_duplicates("item_id", keep="last")
    item_vectors = retriever.candidate_tower.embed(catalogue)
    positives = log.groupby("user_id")["item_id"].apply(set).to_dict()
    for user in positives:
        query = retriever.query_tower.embed({"user_id": [user]})[0]
        scores = item_vectors @ query
        order = [i for i in np.argsort(-scores) if catalogue["item_id"].iloc[i]
                 not in positives[user]]
        top = set(catalogue["item_id"].iloc[order[:5]])
        mine = users[:, 0] == user
        negatives = items[mine, 1:]
        assert not set(negatives.ravel()) & positives[user]
        assert set(negatives[kinds[mine, 1:] == 1]) <= top
    assert (kinds[:, 1:3] == 1).all() and (kinds[:, 3:] == 2).all()


def test_random_negatives_cover_the_catalogue_without_positives(data, vocabs):
    log = data.interactions
    ranker = tk.Ranker(*_towers(vocabs))
    table = _examples(ranker, log, negatives=8, seed=2).table
    assert (table[KIND].reshape(-1, 9)[:, 1:] == 2).all()
    pairs = set(zip(log["user_id"], log["item_id"], strict=True))
    negatives = table[KIND] > 0
    drawn = list(zip(table["user_id"][negatives], table["item_id"][negatives], strict=True))
    assert not set(drawn) & pairs
    assert len({item for _, item in drawn}) > 0.9 * log["item_id"].nunique()


def test_weights_and_labels_follow_their_rows(data, vocabs):
    log = data.interactions.copy()
    log["weight"] = np.arange(len(log), dtype=float) + 1
    ranker = tk.Ranker(*_towers(vocabs))
    table = _examples(ranker, log, negatives=2, label="rating", sample_weight="weight").table
    np.testing.assert_allclose(table[WEIGHT].reshape(-1, 3), np.repeat(log[["weight"]], 3, 1))
    np.testing.assert_allclose(table[LABEL].reshape(-1, 3)[:, 0], log["rating"])
    assert (table[LABEL].reshape(-1, 3)[:, 1:] == 0).all()


@pytest.mark.parametrize(("change", "message"), [
    ({"rating": np.nan}, r"`x\['rating'\]` must hold a label for every row"),
    ({"rating": 3.0}, r"`x\['rating'\]` must vary"),
])
def test_bad_label_columns_are_named(data, vocabs, change, message):
    log = data.interactions.copy()
    column, value = next(iter(change.items()))
    if np.isnan(value):
        log.loc[log.index[3], column] = value
    else:
        log[column] = value
    ranker = tk.Ranker(*_towers(vocabs))
    with pytest.raises(ValueError, match=message):
        ranker.fit(log, label="rating", verbose=False)


def test_bad_settings_are_clear_errors(data, vocabs, retriever):
    log = data.interactions
    with pytest.raises(ValueError, match=r"features.*'item_idd'"):
        tk.Ranker(*_towers(vocabs, candidate=("item_idd",)))
    ranker = tk.Ranker(*_towers(vocabs, query=("user_id", "user_segment")))
    with pytest.raises(ValueError, match=r"`x` must have a column 'user_segment'"):
        ranker.fit(log.drop(columns="user_segment"), verbose=False)
    with pytest.raises(ValueError, match="hard_fraction"):
        ranker.fit(log, hard_fraction=0.5, verbose=False)
    with pytest.raises(ValueError, match="`label` must be None with loss='listwise'"):
        tk.Ranker(*_towers(vocabs), loss="listwise").fit(log, label="rating", verbose=False)
    with pytest.raises(ValueError, match="`loss` must be"):
        tk.Ranker(*_towers(vocabs), loss="pairwise")
    with pytest.raises(ValueError, match="`negatives` must be >= 1 without an explicit label"):
        ranker.fit(log, negatives=0, verbose=False)
    with pytest.raises(ValueError, match="`retrieve_k` must be an integer >= 1"):
        ranker.cascade(retriever, retrieve_k=0)


@pytest.mark.parametrize("loss", ["pointwise", "listwise"])
def test_a_ranker_without_crosses_trains(data, vocabs, loss):
    tf.keras.utils.set_random_seed(0)
    ranker = tk.Ranker(*_towers(vocabs, candidate=("item_id", "item_genres"), dim=8),
                       loss=loss, cross_layers=0, hidden_dims=[8])
    history = ranker.fit(data.interactions, negatives=3, epochs=4, batch_size=64, seed=0,
                         learning_rate=0.05, verbose=False)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]
    assert set(history.history) == {"loss"}  # no regulariser: no 0 and no copy of the loss
    assert not ranker.crosses
    with pytest.raises(ValueError, match="`learning_rate` must be None when the ranker is "
                                         "already compiled"):
        ranker.fit(data.interactions, learning_rate=0.1, verbose=False)


def test_score_is_the_model_on_every_pair(data, vocabs):
    ranker = tk.Ranker(*_towers(vocabs, candidate=("item_id", "item_year")), cross_layers=1)
    users, items = data.users[:3], data.items[:4]
    matrix = ranker.score(users, items)
    for i, user in enumerate(users["user_id"]):
        for j, (item, year) in enumerate(zip(items["item_id"], items["item_year"], strict=True)):
            one = ranker({"user_id": tf.constant([user]), "item_id": tf.constant([item]),
                          "item_year": tf.constant([float(year)])}).numpy()[0]
            assert matrix[i, j] == pytest.approx(one, abs=1e-5)


def test_config_round_trips(vocabs):
    ranker = tk.Ranker(*_towers(vocabs), loss="listwise", cross_layers=3, projection_dim=2,
                       hidden_dims=[8, 4], history_feature="history", recent=[2, 7])
    clone = tk.Ranker.from_config(ranker.get_config())
    assert clone.get_config() == ranker.get_config()
    assert clone.ranking_loss == "listwise" and len(clone.crosses) == 3
    assert clone.history_feature == "history" and clone.recent == (2, 7)
    with pytest.raises(TypeError, match=r"`history_feature` must be a query feature name"):
        tk.Ranker(*_towers(vocabs), history_feature=["history"])
    with pytest.raises(ValueError, match=r"`recent\[1\]` must be"):
        tk.Ranker(*_towers(vocabs), recent=[1, 0])


def _numpy_cascade(retriever, ranker, log, users, retrieve_k):
    """Each user's retrieve_k best unseen items by the embeddings, sorted by the ranker."""
    catalogue = log.drop_duplicates("item_id", keep="last").reset_index(drop=True)
    retrieval = (retriever.query_tower.embed({"user_id": users})
                 @ retriever.candidate_tower.embed(catalogue).T)
    ranked = ranker.score({"user_id": users}, catalogue, retriever=retriever)
    seen = log.groupby("user_id")["item_id"].apply(set).to_dict()
    out = []
    for row, user in enumerate(users):
        unseen = [i for i in np.argsort(-retrieval[row], kind="stable")
                  if catalogue["item_id"][i] not in seen.get(user, set())]
        top = unseen[:retrieve_k]
        reranked = sorted(top, key=lambda i: -ranked[row, i])
        out.append([catalogue["item_id"][i] for i in reranked + unseen[retrieve_k:]])
    return out


@pytest.mark.parametrize("retrieval_score", [False, True])
def test_cascade_recommender_is_the_retrievers_top_reranked(data, vocabs, retriever,
                                                            retrieval_score):
    log = data.interactions
    tf.keras.utils.set_random_seed(1)
    ranker = tk.Ranker(*_towers(vocabs), cross_layers=1, hidden_dims=[8],
                       retrieval_score=retrieval_score)
    cascade = ranker.cascade(retriever, retrieve_k=6)
    assert isinstance(cascade, Cascade)
    recommender = cascade.as_recommender(log)
    users = np.array(sorted(log["user_id"].unique())[:8], dtype=object)
    scores = recommender.score(users)
    seen = log.groupby("user_id")["item_id"].apply(set).to_dict()
    expected = _numpy_cascade(retriever, ranker, log, users, 6)
    for row, user in enumerate(users):
        order = np.argsort(-scores[row], kind="stable")
        got = [recommender.item_ids[i] for i in order if scores[row, i] > -np.inf]
        assert got[:6] == expected[row][:6]  # the re-ranked head
        assert got[6:] == expected[row][6:]  # then retrieval's order
        assert len(got) == len(recommender.item_ids) - len(seen[user])


def test_evaluate_scores_the_cascade(data, vocabs, retriever):
    log = data.interactions
    held_out = np.random.default_rng(0).random(len(log)) < 0.2
    train, test = log[~held_out], log[held_out]
    test = test[test["user_id"].isin(train["user_id"])]
    ranker = tk.Ranker(*_towers(vocabs), cross_layers=0, hidden_dims=[])
    report = tk.evaluate({"cascade": ranker.cascade(retriever, retrieve_k=10),
                          "retrieval": retriever}, test, train=train, k=[5, 20],
                         metrics=["recall"]).to_dict()
    # Beyond retrieve_k the cascade is retrieval: the same 20 items, in another order.
    assert report["cascade"]["recall@20"] == pytest.approx(report["retrieval"]["recall@20"])
    with pytest.raises(ValueError, match=r"`retrieve_k` must be at most the catalogue size"):
        ranker.cascade(retriever, retrieve_k=1000).as_recommender(train)


def test_a_trained_ranker_puts_positives_above_negatives(data, vocabs, retriever):
    tf.keras.utils.set_random_seed(0)
    log = data.interactions
    ranker = tk.Ranker(*_towers(vocabs, query=("user_id", "user_segment"),
                                candidate=("item_id", "item_genres"), dim=8),
                       loss="listwise", cross_layers=1, hidden_dims=[16])
    ranker.fit(log, retriever=retriever, negatives=4, retrieve_k=10, epochs=8,
               batch_size=64, seed=0, learning_rate=0.02, verbose=False)
    table = _examples(ranker, log, retriever=retriever, negatives=4, retrieve_k=10,
                      seed=9).table
    scores = ranker.score_pairs(table).reshape(-1, 5)
    # Share of groups whose positive beats each of its negatives (0.2 by chance).
    assert (scores[:, :1] > scores[:, 1:]).mean() > 0.6


def _rich_ranker(vocabs, retrieval_score=False):
    tf.keras.utils.set_random_seed(2)
    ranker = tk.Ranker(*_towers(vocabs, query=("user_id", "user_segment"),
                                candidate=("item_id", "item_genres", "item_year"), dim=6),
                       cross_layers=2, hidden_dims=[8], retrieval_score=retrieval_score)
    ranker.retrieval_shift.assign(0.3)  # as fit would set them: saved with the artifact
    ranker.retrieval_scale.assign(0.05)
    return ranker


def _numpy_top(retriever, ranker, users, items, exclude, retrieve_k, k):
    """The reference cascade: NumPy top retrieve_k by the embeddings, sorted by the ranker."""
    retrieval = (retriever.query_tower.embed(users) @ retriever.candidate_tower.embed(items).T)
    ranked = ranker.score(users, items, retriever=retriever)
    ids = list(items["item_id"])
    out_ids, out_scores = [], []
    for row, excluded in enumerate(exclude):
        allowed = [i for i in np.argsort(-retrieval[row], kind="stable") if ids[i] not in excluded]
        top = sorted(allowed[:retrieve_k], key=lambda i: -ranked[row, i])[:k]
        out_ids.append([ids[i] for i in top])
        out_scores.append([ranked[row, i] for i in top])
    return out_ids, out_scores


@pytest.mark.parametrize("retrieval_score", [False, True])
def test_cascade_index_reranks_the_retrieved_candidates_and_serves_without_tfrs_kit(
        data, vocabs, retriever, tmp_path, retrieval_score, fresh_python):
    ranker = _rich_ranker(vocabs, retrieval_score)
    items = data.items
    index = tk.IndexBuilder(k_max=5, backend="brute_force").build(
        retriever, items, ranker=ranker, retrieve_k=12)
    assert set(index.query_features) == {"user_id", "user_segment"}
    users = data.users.iloc[:6][["user_id", "user_segment"]].reset_index(drop=True)
    exclude = [list(items["item_id"][:3]), [], ["i7"], [], list(items["item_id"][5:30]), []]
    got = index.recommend(users, k=5, exclude=exclude)
    expected_ids, expected_scores = _numpy_top(retriever, ranker, users, items, exclude, 12, 5)
    assert got.ids.tolist() == expected_ids
    np.testing.assert_allclose(got.scores, np.array(expected_scores), rtol=1e-4, atol=1e-4)
    retrieval_only = tk.IndexBuilder(k_max=5, backend="brute_force").build(retriever, items)
    assert retrieval_only.recommend(users, k=5, exclude=exclude).ids.tolist() != expected_ids

    index.save(tmp_path / "cascade")
    reloaded = tk.load_index(tmp_path / "cascade").recommend(users, k=5, exclude=exclude)
    assert reloaded.ids.tolist() == expected_ids
    code = (
        "import sys, json\n"
        "sys.modules['tfrs_kit'] = None  # importing it now fails\n"
        "import tensorflow as tf\n"
        f"served = tf.saved_model.load({str(tmp_path / 'cascade' / 'saved_model')!r})\n"
        "users, segments, exclude = json.loads(sys.argv[1])\n"
        "out = served.signatures['recommend'](user_id=tf.constant(users),\n"
        "    user_segment=tf.constant(segments), k=tf.constant(5), exclude=tf.constant(exclude))\n"
        "default = served.signatures['serving_default'](user_id=tf.constant(users),\n"
        "    user_segment=tf.constant(segments))\n"
        "print(json.dumps([[[b.decode() for b in row] for row in o['ids'].numpy()]\n"
        "                  for o in (out, default)]))\n"
    )
    width = max(len(e) for e in exclude)
    padded = [e + [""] * (width - len(e)) for e in exclude]
    argument = json.dumps([list(users["user_id"]), list(users["user_segment"]), padded])
    result = fresh_python(code, argv=[argument])
    assert result.returncode == 0, result.stderr
    served, default = json.loads(result.stdout.strip().splitlines()[-1])
    assert served == expected_ids
    assert default == _numpy_top(retriever, ranker, users, items, [[]] * 6, 12, 5)[0]


def test_cascade_index_refuses_what_it_cannot_serve(data, vocabs, retriever):
    ranker = _rich_ranker(vocabs)
    builder = tk.IndexBuilder(k_max=5, backend="brute_force")
    items = data.items
    with pytest.raises(ValueError, match=r"`ranker` must read only candidate features the index "
                                         r"can serve.*'item_genres'"):
        builder.build(retriever, items.drop(columns="item_genres"), ranker=ranker, retrieve_k=10)
    with pytest.raises(ValueError, match=r"`retrieve_k` must be from k_max \(5\) to the "
                                         r"catalogue size \(100\)"):
        builder.build(retriever, items, ranker=ranker, retrieve_k=4)
    with pytest.raises(ValueError, match=r"`retrieve_k` must be from k_max"):
        builder.build(retriever, items, ranker=ranker, retrieve_k=101)
    with pytest.raises(ValueError, match=r"`retrieve_k` must be given with a ranker"):
        builder.build(retriever, items, ranker=ranker)
    with pytest.raises(TypeError, match=r"`ranker` must be a tfrs_kit Ranker"):
        builder.build(retriever, items, ranker=retriever, retrieve_k=10)
    index = builder.build(retriever, items, ranker=ranker, retrieve_k=10)
    with pytest.raises(ValueError, match="retrieval-only index"):
        index.with_candidates(retriever, items.iloc[:3])


def _multitask(vocabs, **weights):
    tf.keras.utils.set_random_seed(5)
    return Multitask(*_towers(vocabs, dim=4), label="rating", rating_hidden_dims=[8], **weights)


def test_multitask_loss_is_the_weighted_sum_of_retrieval_and_squared_error(data, vocabs):
    log = data.interactions.iloc[:64]
    both = _multitask(vocabs, retrieval_weight=0.3, rating_weight=2.0)
    both.fit(log, epochs=1, batch_size=64, verbose=False)  # builds; sets the frequencies
    batch = next(iter(make_dataset(both._prepare(both._read(log, "x")), both._columns,
                                   batch_size=64)))
    retrieval_only = tk.TwoTowerRetrieval(*_towers(vocabs, dim=4))
    retrieval_only(batch)
    retrieval_only.set_weights([w for w in both.get_weights()][:len(retrieval_only.weights)])
    retrieval_only.candidate_frequencies_ = both.candidate_frequencies_
    retrieval = float(retrieval_only.compute_loss(batch))
    predicted = both.predict_ratings(log)
    squared = np.mean((predicted - log["rating"].to_numpy()) ** 2)
    assert float(both.compute_loss(batch)) == pytest.approx(0.3 * retrieval + 2.0 * squared,
                                                            rel=1e-4)


def test_multitask_learns_the_rating_and_refuses_bad_labels(data, vocabs):
    log = data.interactions
    model = _multitask(vocabs, retrieval_weight=0.1, rating_weight=1.0)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02))
    model.fit(log, epochs=15, batch_size=128, seed=0, verbose=False)
    error = np.mean((model.predict_ratings(log) - log["rating"]) ** 2)
    assert error < 0.9 * np.var(log["rating"])  # better than predicting the mean
    clone = Multitask.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    bad = log.assign(rating=np.where(np.arange(len(log)) == 4, np.nan, log["rating"]))
    with pytest.raises(ValueError, match=r"`x\['rating'\]` must hold a label for every row"):
        _multitask(vocabs).fit(bad, verbose=False)
    with pytest.raises(ValueError, match="`rating_weight` must be > 0"):
        _multitask(vocabs, retrieval_weight=0.0, rating_weight=0.0)


def test_retrieval_scores_are_the_retrievers_dot_products(data, vocabs, retriever):
    log = data.interactions
    ranker = tk.Ranker(*_towers(vocabs), retrieval_score=True)
    with pytest.raises(ValueError, match="`retriever` must be given to a ranker with "
                                         "retrieval_score=True"):
        ranker.fit(log, verbose=False)
    table = _examples(ranker, log, retriever=retriever, negatives=3, hard_fraction=0.0).table
    users = retriever.query_tower.embed({"user_id": table["user_id"]})
    items = retriever.candidate_tower.embed({"item_id": table["item_id"]})
    np.testing.assert_allclose(table[RETRIEVAL_SCORE], (users * items).sum(axis=1),
                               rtol=1e-5, atol=1e-6)
    assert float(ranker.retrieval_shift) == pytest.approx(table[RETRIEVAL_SCORE].mean(), abs=1e-6)
    assert float(ranker.retrieval_scale) == pytest.approx(table[RETRIEVAL_SCORE].std(), rel=1e-5)
    history = ranker.fit(log, retriever=retriever, negatives=3, epochs=2, verbose=False)
    assert np.isfinite(history.history["loss"]).all()
    with pytest.raises(ValueError, match="`retriever` must be given to score"):
        ranker.score(data.users[:2], data.items[:3])


def test_seen_interactions_are_never_negatives_nor_in_the_hard_pool(data, vocabs, retriever):
    log = data.interactions
    later = log.groupby("user_id").cumcount(ascending=False) < 3  # each user's last 3 rows
    earlier, recent = log[~later], log[later]
    ranker = tk.Ranker(*_towers(vocabs))
    examples = _examples(ranker, recent, retriever=retriever, negatives=6, hard_fraction=0.5,
                         retrieve_k=4, seed=4, seen=earlier)
    table = examples.table
    negative = table[KIND] > 0
    drawn = set(zip(table["user_id"][negative], table["item_id"][negative], strict=True))
    assert not drawn & set(zip(log["user_id"], log["item_id"], strict=True))
    catalogue = recent.drop_duplicates("item_id", keep="last")
    item_vectors = retriever.candidate_tower.embed(catalogue)
    everything = log.groupby("user_id")["item_id"].apply(set).to_dict()
    hard = table[KIND] == 1
    for user in recent["user_id"].unique():
        scores = item_vectors @ retriever.query_tower.embed({"user_id": [user]})[0]
        order = [catalogue["item_id"].iloc[i] for i in np.argsort(-scores)
                 if catalogue["item_id"].iloc[i] not in everything[user]]
        assert set(table["item_id"][hard & (table["user_id"] == user)]) <= set(order[:4])


def test_cascade_index_with_integer_ids_pads_with_minus_one():
    rng = np.random.default_rng(0)
    log = pd.DataFrame({"user_id": rng.integers(0, 20, 300), "item_id": rng.integers(0, 30, 300)})
    vocabs = tk.VocabularyBuilder().fit(log)
    tf.keras.utils.set_random_seed(3)
    retriever = tk.TwoTowerRetrieval(*_towers(vocabs))
    ranker = tk.Ranker(*_towers(vocabs), cross_layers=1, hidden_dims=[4])
    items = pd.DataFrame({"item_id": np.arange(30)})
    index = tk.IndexBuilder(k_max=4, backend="brute_force").build(
        retriever, items, ranker=ranker, retrieve_k=5)
    users = pd.DataFrame({"user_id": [0, 1]})
    exclude = [list(range(27)), [3]]  # user 0 has only 3 candidates left
    got = index.recommend(users, k=4, exclude=exclude)
    expected, _ = _numpy_top(retriever, ranker, users, items, exclude, 5, 4)
    assert got.ids[1].tolist() == expected[1]
    assert got.ids[0].tolist() == [*expected[0], -1] and got.scores[0, 3] == -np.inf


def test_cascade_index_on_scann_reranks_what_scann_retrieves(data, vocabs, retriever):
    pytest.importorskip("scann")
    ranker = _rich_ranker(vocabs, retrieval_score=True)
    items = data.items
    index = tk.IndexBuilder(k_max=5, backend="scann").build(
        retriever, items, ranker=ranker, retrieve_k=12)
    assert index.backend == "scann"
    users = data.users.iloc[:5][["user_id", "user_segment"]].reset_index(drop=True)
    exclude = [["i1", "i2"], [], [], ["i9"], []]
    # 100 candidates: no tree, and every candidate rescored exactly, so ScaNN finds
    # brute force's 12.
    expected, scores = _numpy_top(retriever, ranker, users, items, exclude, 12, 5)
    got = index.recommend(users, k=5, exclude=exclude)
    assert got.ids.tolist() == expected
    np.testing.assert_allclose(got.scores, np.array(scores), rtol=1e-4, atol=1e-4)


# --- fit_lists: the retriever's own lists, a residual blend, the history similarities ---


@pytest.fixture(scope="module")
def lists_setup(data):
    """A retriever reading (user_id, history); each user's latest 30% as positives."""
    log = data.interactions.sort_values(["timestamp", "item_id"], kind="stable")
    log = log.reset_index(drop=True)
    rank = log.groupby("user_id").cumcount(ascending=False)
    size = log.groupby("user_id")["user_id"].transform("size")
    late = (rank < np.ceil(0.3 * size)).to_numpy()
    early, positives = log[~late], log[late]
    history = tk.HistoryBuilder(item_id="item_id", max_length=6)
    rows = history.transform(log)
    vocabs = tk.VocabularyBuilder().fit(rows, features={
        "user_id": "categorical", "user_segment": "categorical", "item_id": "categorical",
        "history": "multi", "item_genres": "multi"})
    tf.keras.utils.set_random_seed(4)
    retriever = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "history"],
                                              output_dim=6),
                                     tk.Tower(vocabs, features=["item_id"], output_dim=6))
    queries = pd.DataFrame(history.for_users(early)).merge(data.users, on="user_id")
    return dict(vocabs=vocabs, retriever=retriever, queries=queries, early=early,
                positives=positives, items=data.items)


def _list_ranker(setup, **settings):
    tf.keras.utils.set_random_seed(5)
    vocabs = setup["vocabs"]
    return tk.Ranker(tk.Tower(vocabs, features=["user_segment"], output_dim=4),
                     tk.Tower(vocabs, features=["item_id", "item_genres"], output_dim=4),
                     loss="listwise", cross_layers=0, hidden_dims=[],
                     retrieval_score=True, **settings)


def _fit_lists(ranker, setup, positives=None, **settings):
    defaults = dict(retriever=setup["retriever"], candidates=setup["items"],
                    seen=setup["early"][["user_id", "item_id"]], retrieve_k=8,
                    epochs=2, batch_size=8, seed=0, verbose=False)
    return ranker.fit_lists(setup["queries"], setup["positives"] if positives is None
                            else positives, **{**defaults, **settings})


def _numpy_lists(setup, retrieve_k):
    """Each query user's retrieve_k best unseen items (catalogue rows) and their scores."""
    retriever, items = setup["retriever"], setup["items"].reset_index(drop=True)
    queries = setup["queries"]
    scores = (retriever.query_tower.embed(queries) @ retriever.candidate_tower.embed(items).T)
    seen = setup["early"].groupby("user_id")["item_id"].apply(set).to_dict()
    ids = list(items["item_id"])
    out = {}
    for row, user in enumerate(queries["user_id"]):
        order = [i for i in np.argsort(-scores[row], kind="stable") if ids[i] not in seen[user]]
        out[user] = (order[:retrieve_k], scores[row, order[:retrieve_k]])
    return out


def test_fit_lists_trains_on_the_retrievers_own_lists(lists_setup):
    ranker = _list_ranker(lists_setup)
    lists, relevant = ranker._lists(
        lists_setup["queries"], lists_setup["positives"], retriever=lists_setup["retriever"],
        candidates=lists_setup["items"], user_id="user_id", retrieve_k=8,
        seen=lists_setup["early"][["user_id", "item_id"]], residual=True)
    expected = _numpy_lists(lists_setup, 8)
    wanted = lists_setup["positives"].groupby("user_id")["item_id"].apply(set).to_dict()
    ids = np.asarray(lists_setup["items"]["item_id"])
    table = lists.table
    users = lists_setup["queries"]["user_id"].to_numpy()[lists.train_rows[::8]]
    assert lists.group_size == 8 and len(users) == len(relevant) > 10
    for g, user in enumerate(users):
        rows = slice(8 * g, 8 * g + 8)
        order, scores = expected[user]
        assert list(table["item_id"][rows]) == list(ids[order])  # retrieval's order
        labels = [float(item in wanted[user]) for item in ids[order]]
        assert table[LABEL][rows].tolist() == labels and any(labels)
        z = (scores - scores.mean()) / scores.std()
        np.testing.assert_allclose(table[RETRIEVAL_SCORE][rows], z, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(table[OFFSET][rows], z, rtol=1e-4, atol=1e-4)  # residual
        assert relevant[g] == len(wanted[user])


def test_blend_ndcg_is_ndcg_at_10_of_each_blend():
    # Two lists of 3: z puts the positive 3rd / 1st; the ranker puts it 1st / 2nd.
    z = np.array([1.0, 0.0, -1.0, 1.0, 0.0, -1.0], np.float32)
    table = {RETRIEVAL_SCORE: z, OFFSET: z, LABEL: np.array([0, 0, 1, 1, 0, 0], np.float32)}
    lists = Examples(table=table, group_size=3, train_rows=np.zeros(6, int),
                     item_rows=np.zeros(6, int))
    ranked = np.array([[0.0, 0.0, 5.0], [0.0, 3.0, 0.0]])
    got = _blend_ndcg(lists, ranked, np.array([1, 2]), [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    ideal = [1.0, 1.0 + 1 / np.log2(3)]  # the second user has 2 positives, one in the list
    assert got[(1.0, 0.0)] == pytest.approx(np.mean([1 / np.log2(4) / ideal[0], 1 / ideal[1]]))
    # z + ranker: list 1 scores (1, 0, 4): positive 1st; list 2 (1, 3, -1): 2nd.
    assert got[(1.0, 1.0)] == pytest.approx(np.mean([1.0, 1 / np.log2(3) / ideal[1]]))
    assert got[(0.0, 1.0)] == got[(1.0, 1.0)]


def test_fit_lists_chooses_the_best_blend_on_held_out_users(lists_setup):
    ranker = _list_ranker(lists_setup)
    _fit_lists(ranker, lists_setup, ranker_weights=[1.0, 0.0, 0.5], validation_fraction=0.4)
    blends = list(ranker.blend_ndcg_)
    assert blends == [(1.0, 0.0), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]  # sorted, 0 first
    best = max(ranker.blend_ndcg_.values())
    first = next(b for b in blends if ranker.blend_ndcg_[b] == best)
    assert (float(ranker.retrieval_weight.numpy()), float(ranker.ranker_weight.numpy())) == first
    assert float(ranker.per_list.numpy()) == 1.0
    _fit_lists(ranker, lists_setup, validation_fraction=0.0)
    assert ranker.blend_ndcg_ == {} and float(ranker.ranker_weight.numpy()) == 1.0


def test_a_residual_ranker_with_weight_zero_keeps_retrievals_order(lists_setup):
    ranker = _list_ranker(lists_setup)
    _fit_lists(ranker, lists_setup, epochs=1)
    ranker.retrieval_weight.assign(1.0)
    ranker.ranker_weight.assign(0.0)  # as fit_lists sets it when ranking hurts on validation
    queries, items = lists_setup["queries"], lists_setup["items"]
    recommender = ranker.cascade(lists_setup["retriever"], retrieve_k=8).as_recommender(
        lists_setup["early"], users=queries, items=items)
    scores = recommender.score(np.asarray(queries["user_id"]))
    expected = _numpy_lists(lists_setup, 8)
    for row, user in enumerate(queries["user_id"]):
        order = np.argsort(-scores[row], kind="stable")[:8]
        assert list(recommender.item_ids[order]) == list(items["item_id"].iloc[expected[user][0]])


def _numpy_history_similarity(history, valid, candidates, recent):
    out = np.zeros((*candidates.shape[:2], len(recent)))
    for b in range(len(history)):
        kept = [h for h, ok in zip(history[b], valid[b], strict=True) if ok]
        for r, length in enumerate(recent):
            last = [v / np.linalg.norm(v) for v in kept[-length:]]
            mean = np.mean(last, axis=0) if last else np.zeros(history.shape[2])
            for n, c in enumerate(candidates[b]):
                out[b, n, r] = mean @ c / np.linalg.norm(c)
    return out


def test_history_similarity_is_the_cosine_with_the_latest_items():
    rng = np.random.default_rng(0)
    history, candidates = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 6, 4))
    valid = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    got = history_similarity(tf.constant(history), tf.constant(valid), tf.constant(candidates),
                             (1, 2, 4)).numpy()
    np.testing.assert_allclose(got, _numpy_history_similarity(history, valid, candidates,
                                                              (1, 2, 4)), atol=1e-5)
    ids = pd.Index(["a", "b", "c"])
    assert history_positions([["b", "x"], [], ["c", "a", "b"]], ids).tolist() == [
        [1, -1, -1], [-1, -1, -1], [2, 0, 1]]


def test_cascade_with_history_serves_the_numpy_blend(lists_setup, tmp_path):
    ranker = _list_ranker(lists_setup, history_feature="history", recent=(1, 3))
    _fit_lists(ranker, lists_setup, validation_fraction=0.0)  # weights (1, 1)
    retriever, items = lists_setup["retriever"], lists_setup["items"].reset_index(drop=True)
    users = lists_setup["queries"].iloc[:5].reset_index(drop=True)
    seen = lists_setup["early"].groupby("user_id")["item_id"].apply(list).to_dict()
    exclude = [seen[user] for user in users["user_id"]]
    # The reference: z, the similarities and the model's head, blended in NumPy.
    item_vectors = retriever.candidate_tower.embed(items)
    ids = list(items["item_id"])
    expected = []
    for row, user in enumerate(users["user_id"]):
        order, scores = _numpy_lists(lists_setup, 8)[user]
        z = (scores - scores.mean()) / scores.std()
        positions = [ids.index(i) for i in users["history"][row]]
        sim = _numpy_history_similarity(item_vectors[positions][None], np.ones((1, len(
            positions)), bool), item_vectors[order][None], (1, 3))[0]
        head = ranker.score_embeddings(
            tf.constant(np.repeat(ranker.query_tower.embed(users.iloc[[row]]), 8, axis=0)),
            tf.constant(ranker.candidate_tower.embed(items.iloc[order])),
            tf.constant(z, tf.float32), tf.constant(sim, tf.float32)).numpy()
        expected.append([ids[order[i]] for i in np.argsort(-(z + head), kind="stable")[:4]])
    index = tk.IndexBuilder(k_max=4, backend="brute_force").build(
        retriever, items, ranker=ranker, retrieve_k=8)
    assert index.recommend(users, k=4, exclude=exclude).ids.tolist() == expected
    index.save(tmp_path / "cascade")
    metadata = json.loads((tmp_path / "cascade" / "tfrs_kit_index.json").read_text())
    assert metadata["retrieve_k"] == 8 and metadata["k_max"] == 4
    reloaded = tk.load_index(tmp_path / "cascade")
    assert reloaded.recommend(users, k=4, exclude=exclude).ids.tolist() == expected
    recommender = ranker.cascade(retriever, retrieve_k=8).as_recommender(
        lists_setup["early"], users=lists_setup["queries"], items=items)
    scores = recommender.score(np.asarray(users["user_id"]))
    got = [list(recommender.item_ids[np.argsort(-row, kind="stable")[:4]]) for row in scores]
    assert got == expected


def test_fit_lists_and_history_refuse_what_they_cannot_do(lists_setup, data, vocabs):
    ranker = _list_ranker(lists_setup, history_feature="history")
    with pytest.raises(ValueError, match=r"without history_feature to fit"):
        ranker.fit(lists_setup["early"], negatives=2, verbose=False)
    with pytest.raises(ValueError, match=r"`retriever` must be given to fit_lists"):
        ranker.fit_lists(lists_setup["queries"], lists_setup["positives"], retriever=None)
    with pytest.raises(ValueError, match=r"`positives` must hold, for some user, an item"):
        _fit_lists(ranker, lists_setup, positives=lists_setup["early"])  # all seen
    with pytest.raises(TypeError, match=r"`ranker_weights` must be a non-empty list"):
        _fit_lists(ranker, lists_setup, ranker_weights=[])
    # A retriever without the history feature: the request would not carry it.
    plain = tk.TwoTowerRetrieval(*_towers(vocabs))
    with pytest.raises(ValueError, match=r"`ranker` must read a history the retriever"):
        tk.IndexBuilder(k_max=4, backend="brute_force").build(
            plain, data.items, ranker=ranker, retrieve_k=8)
