"""The next-item model (``ranking/_sequence.py``) and the ranker that reads it."""

import copy
import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.ranking import _sequence
from tfrs_kit.ranking._scoring import history_positions
from tfrs_kit.ranking._sequence import NextItemModel, fit_next_items, next_items_for

ITEMS = 24


def _walks(users=60, length=20, noise=0.0, seed=0):
    """Each user walks the items in a cycle (user u: steps of 1 + u % 3), from a random
    start; ``noise`` of the steps go to a random item instead."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        at, step = int(rng.integers(ITEMS)), 1 + u % 3
        for t in range(length):
            item = at if rng.random() >= noise else int(rng.integers(ITEMS))
            rows.append((f"u{u}", f"i{item}", u * 1000 + t))
            at = (at + step) % ITEMS
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.fixture(scope="module")
def model():
    log = _walks()
    return fit_next_items(NextItemModel([f"i{i}" for i in range(ITEMS)], dim=16, blocks=1,
                                        max_length=8, dropout=0.0), log, user_id="user_id",
                          item_id="item_id", epochs=1000)


def test_it_learns_what_comes_next_in_order(model):
    """After i3, i4 the next is i5 (steps of 1); after i3, i5 it is i7 (steps of 2): the
    order of the history, not the set, decides (i3 and i5 both precede either)."""
    index = model.index
    histories = tf.constant([index.get_indexer(["i3", "i4"]), index.get_indexer(["i3", "i5"]),
                             index.get_indexer(["i0", "i3"])])
    top = np.asarray(model.ids)[np.argmax(model(histories).numpy(), axis=1)]
    assert top.tolist() == ["i5", "i7", "i6"]


def test_unknown_items_and_padding_anywhere_are_skipped(model):
    index = model.index
    a, b = index.get_indexer(["i3", "i4"])
    plain = model(tf.constant([[a, b]])).numpy()
    holes = model(tf.constant([[-1, a, -1, b, -1]])).numpy()
    np.testing.assert_allclose(holes, plain, atol=1e-5)
    longer = model(tf.constant([[*index.get_indexer([f"i{i}" for i in range(6)]), a, b]]))
    np.testing.assert_allclose(longer.numpy(), model(tf.constant([[
        *index.get_indexer([f"i{i}" for i in range(6)])[-6:], a, b]])).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.exp(plain).sum(), 1.0, rtol=1e-4)  # log-probabilities


def test_each_position_learns_the_next_items_of_its_user_only(monkeypatch):
    """Windows end at a user's latest item; each input position's targets are that user's
    next items in order (0 past the user's end, never the next user's)."""
    monkeypatch.setattr(_sequence, "_AHEAD", 3)
    log = pd.DataFrame({"user_id": ["a"] * 7 + ["b"] * 2 + ["c"],
                        "item_id": [*"1234567", "8", "9", "1"]})
    x, y = _sequence._windows(log, user_id="user_id", item_id="item_id",
                              index=pd.Index(list("123456789")), length=3)
    assert x.tolist() == [[4, 5, 6], [1, 2, 3], [8, 0, 0]]  # positions + 1; "c": no target
    assert y.tolist() == [[[5, 6, 7], [6, 7, 0], [7, 0, 0]],
                          [[2, 3, 4], [3, 4, 5], [4, 5, 6]],
                          [[9, 0, 0], [0, 0, 0], [0, 0, 0]]]


def test_the_sampled_softmax_shares_negatives_that_are_no_targets(monkeypatch):
    """With every class drawn at odds 1, each target's loss is its softmax against the
    classes that are none of its position's targets (written out in NumPy)."""
    rng = np.random.default_rng(0)
    table, outputs = rng.normal(size=(6, 4)), rng.normal(size=(2, 4))
    labels = np.array([[1, 3], [5, 1]])
    monkeypatch.setattr(_sequence, "_AHEAD", 2)
    monkeypatch.setattr(tf.random, "log_uniform_candidate_sampler", lambda *a, **k: (
        tf.range(6, dtype=tf.int64), tf.ones([2, 2]), tf.ones([6])))
    got = _sequence._sampled_loss(tf.constant(outputs, tf.float32), tf.constant(labels),
                                  tf.constant(table, tf.float32), 6).numpy()
    logits = outputs @ table.T
    for p in range(2):
        others = np.exp(np.delete(logits[p], labels[p])).sum()
        want = [-np.log(np.exp(logits[p, c]) / (np.exp(logits[p, c]) + others))
                for c in labels[p]]
        np.testing.assert_allclose(got[p], want, rtol=1e-5)


def test_the_vocabulary_is_ordered_by_popularity():
    log = pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 2, "item_id": ["x", "y", "y", "z", "y",
                                                                      "z"],
                        "timestamp": range(6)})
    model = next_items_for(log, ["x", "y", "z", "w"], user_id="user_id", item_id="item_id",
                           epochs=1)
    assert model.ids == ["y", "z", "x", "w"]  # never logged: last


def _ranker(vocabs, history="history", next_items=None):
    return tk.Ranker(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                     tk.Tower(vocabs, features=["item_id"], output_dim=4), loss="listwise",
                     history_feature=history, recent=(1, 2), next_items=next_items)


def test_the_ranker_reads_the_models_log_probabilities_of_its_candidates(model):
    vocabs = tk.VocabularyBuilder().fit(_walks(), features=["user_id", "item_id"])
    ranker = _ranker(vocabs, next_items=model)
    catalogue = pd.Index([f"i{i}" for i in reversed(range(ITEMS))])  # not the model's order
    history = history_positions([["i3", "i4"], []], catalogue)
    top = catalogue.get_indexer([["i5", "i9"], ["i5", "i9"]][0])
    candidates = np.stack([top, top])
    vectors = np.eye(ITEMS, dtype=np.float32)
    got = ranker.history_similarity(vectors[np.maximum(history, 0)], history >= 0,
                                    vectors[candidates],
                                    (history, candidates, ranker.next_item_positions(catalogue)))
    assert got.shape == (2, 2, 4)  # recent (1, 2), then the two next-item columns
    expected = model(tf.constant([model.index.get_indexer(["i3", "i4"])])).numpy()[0]
    expected = expected[model.index.get_indexer(["i5", "i9"])]
    np.testing.assert_allclose(got[0, :, 2], np.maximum(expected, -20) / 5 + 2, rtol=1e-5)
    assert got[0, 0, 3] > 0 > got[0, 1, 3]  # standardised within the list: i5 above i9
    np.testing.assert_array_equal(got[1, :, 2:], 0.0)  # no history: no next-item signal


def test_the_ranker_config_keeps_the_model_and_refuses_it_without_history(model):
    vocabs = tk.VocabularyBuilder().fit(_walks(), features=["user_id", "item_id"])
    ranker = _ranker(vocabs, next_items=model)
    again = tk.Ranker.from_config(ranker.get_config())
    assert again.next_items.ids == model.ids and again.next_items.max_length == 8
    assert again._similarity_columns[-2:] == ("tfrs_kit_similarity_next",
                                              "tfrs_kit_similarity_next_list")
    with pytest.raises(ValueError, match=r"next_items.*history_feature"):
        _ranker(vocabs, history=None, next_items=model)
    with pytest.raises(TypeError, match="next_items"):
        _ranker(vocabs, next_items="sasrec")


def _recipe_log():
    """The log the ``recipe`` fixture fits (tests regenerate it as their reference)."""
    return _walks(users=80, length=25, noise=0.2, seed=1)


@pytest.fixture(scope="module")
def recipe():
    log = _recipe_log()
    with pytest.MonkeyPatch.context() as patch:  # each next-item model: 34 epochs of 3
        patch.setattr(_sequence, "_PASSES", 0)  # steps (100 steps), not 134 epochs (400
        patch.setattr(_sequence, "_MIN_STEPS", 100)  # steps, the default)
        return tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, blend=False,
                         histories=["mean"], rerank=True, verbose=False).fit(log)


def test_the_recipe_serves_one_next_item_model_everywhere(recipe, tmp_path):
    """In memory, in the exported index and after a load, the same re-ranked lists."""
    assert recipe.cascade_.ranker.next_items is not None
    users = list(recipe.queries()["user_id"][:8])
    expected = recipe.recommend(users, k=5)
    queries = recipe.queries().set_index("user_id").loc[users].reset_index()
    seen = recipe._seen()
    exclude = [list(seen.loc[seen["user_id"] == u, "item_id"]) for u in users]
    served = recipe.build_index(k_max=5).recommend(queries, k=5, exclude=exclude)
    print(served.ids, expected.ids, served.scores, expected.scores)
    np.testing.assert_array_equal(served.ids, expected.ids)
    recipe.save(tmp_path / "model")
    loaded = tk.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.recommend(users, k=5).scores, expected.scores, rtol=1e-5)


def _long_histories(recipe, users):
    """``users``' query rows with long histories (past the exported cascade's first width
    of 64) holding ids the catalogue lacks."""
    rng = np.random.default_rng(3)
    catalogue = list(recipe.candidates()["item_id"])
    rows = recipe.queries().set_index("user_id").loc[users].reset_index()
    long = [[*rng.choice(catalogue, 90), "nowhere", *rng.choice(catalogue, 40)],
            ["gone", *rng.choice(catalogue, 3), "gone"], list(rng.choice(catalogue, 70))]
    rows["history"] = pd.Series([np.asarray(h, dtype=object) for h in long], dtype=object)
    return rows


def test_the_exported_cascade_reads_long_histories_with_holes_as_in_memory(recipe):
    """The SavedModel compiles the ranker's work for one query per history width (the
    latest items it reads, cut in the program): its lists, one query at a time or in a
    batch, equal the in-memory cascade's, which reads each whole history."""
    from tfrs_kit.recipe._rerank import serving_cascade

    users = list(recipe.queries()["user_id"][:3])
    rows = _long_histories(recipe, users)
    cascade, seen = serving_cascade(recipe), recipe._seen()
    memory = cascade.as_recommender(seen, users=rows,
                                    items=cascade.with_features(recipe.candidates()))
    scores = memory.score(np.asarray(users, dtype=object))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    left = np.isfinite(np.take_along_axis(scores, order, axis=1))  # all seen: padding
    expected = np.where(left, memory.item_ids[order], "")
    exclude = [list(seen.loc[seen["user_id"] == u, "item_id"]) for u in users]
    index = recipe.build_index(k_max=5)
    np.testing.assert_array_equal(index.recommend(rows, k=5, exclude=exclude).ids, expected)
    for i in range(len(users)):  # one query: the XLA program
        one = index.recommend(rows.iloc[i:i + 1], k=5, exclude=exclude[i:i + 1])
        np.testing.assert_array_equal(one.ids[0], expected[i])


def test_the_exported_cascade_keeps_every_history_slot_the_ranker_reads(recipe):
    """Against a reference written out: the latest max(recent) known items, and the
    latest max_length the next-item model knows, in order, -1 after them."""
    functions = recipe.build_index(k_max=5)._functions
    ranker = recipe.cascade_.ranker
    recent, length = max(ranker.recent), ranker.next_items.max_length
    rng = np.random.default_rng(5)
    history = rng.integers(-1, ITEMS, size=(4, 140))
    history[1, :] = -1
    history[2, :-3] = -1
    mapping = rng.integers(-1, ITEMS, size=ITEMS)  # the next-item model lacks some items
    functions.next_items = tf.constant(mapping, tf.int64)
    got = functions._latest(tf.constant(history, tf.int64)).numpy()
    assert got.shape == (4, recent + length)
    for row, out in zip(history, got, strict=True):
        slots = np.flatnonzero(row >= 0)
        modelled = slots[mapping[row[slots]] >= 0]
        kept = sorted({*slots[len(slots) - recent:], *modelled[len(modelled) - length:]})
        np.testing.assert_array_equal(out, [*row[kept], *[-1] * (recent + length - len(kept))])


def test_the_served_model_learned_the_whole_log(recipe):
    """The served model: from each user's latest items it predicts their walk's
    next step (user u steps by 1 + u % 3) far more often than chance would (1 / 24): a
    fifth of the steps are noise, in the history as in the next step (0.50 to 0.56
    measured; an untrained or order-blind model: about 1 / 24 to 1 / 8)."""
    model, queries = recipe.cascade_.ranker.next_items, recipe.queries()
    history = history_positions(queries["history"], model.index)
    top = np.asarray(model.ids)[np.argmax(model(tf.constant(history)).numpy(), axis=1)]
    walked = [f"i{(int(h[-1][1:]) + 1 + int(u[1:]) % 3) % ITEMS}"
              for u, h in zip(queries["user_id"], queries["history"], strict=True)]
    assert np.mean(top == np.array(walked)) > 0.35


def test_the_served_cascade_refits_it_on_the_whole_log_in_time_order(recipe, monkeypatch):
    """The walks above stay the same all along, so a model never refit passes them too:
    here the served cascade's next-item model is refit on every row of the training log
    (the validation slice too: the measured one ended before it), in time order, and the
    items' counts are the whole log's."""
    from tfrs_kit.recipe import _rerank

    refits = []
    monkeypatch.setattr(_sequence, "refit_next_items",
                        lambda model, rows, **k: refits.append((model, rows)))
    ranker = recipe.cascade_.ranker
    cascade = _rerank.served_cascade(ranker, recipe.report.rerank, recipe._data,
                                     recipe.settings, recipe.model, seed=0)
    (model, rows), = refits
    log = _recipe_log().sort_values("timestamp")
    assert model is ranker.next_items and cascade.ranker is ranker
    key = ["user_id", "item_id", "timestamp"]
    np.testing.assert_array_equal(rows[key].to_numpy(), log[key].to_numpy())
    counts = log["item_id"].value_counts()
    table = cascade.items_.set_index("item_id")
    np.testing.assert_allclose(table["item_log_count"],
                               np.log1p(counts.reindex(table.index).fillna(0)), rtol=1e-6)


def test_auto_counts_the_next_item_models_in_the_stages_time(recipe, monkeypatch):
    """A budget that holds the rest of the stage (2.5 x 1 s) but not three next-item
    trainings of the measured length skips the stage; one that holds both runs it."""
    from tfrs_kit.ranking import _protocol
    from tfrs_kit.recipe import _rerank
    from tfrs_kit.recipe._inputs import split_validation
    from tfrs_kit.recipe._training import Trained

    data = recipe._data
    fit, validation = split_validation(data.log, data.columns, 0.2, min_users=10)
    data = dataclasses.replace(data, log=fit)
    best = Trained(recipe.model, recipe.settings, 1, {}, 1.0, epochs_run=1, final_seconds=1.0)
    monkeypatch.setattr(_sequence, "training_seconds", lambda *a, **k: 20.5)
    ranker, choice = _rerank.fit_rerank("auto", data, validation, best, None, lambda m: None,
                                        metric="ndcg@10", seed=0, end=time.monotonic() + 60)
    assert ranker is None and not choice.kept and "64 s needed" in choice.reason
    # The rest of the stage stubbed (the fixture's cascade left as it is):
    monkeypatch.setattr(_rerank, "_fit_cascade", lambda *a, **k: copy.copy(recipe.cascade_))
    monkeypatch.setattr(_sequence, "refit_next_items", lambda *a, **k: None)
    monkeypatch.setattr(_protocol, "fit_ranker", lambda *a, **k: recipe.cascade_.ranker)
    monkeypatch.setattr(_rerank, "_measure", lambda *a, **k: {0: np.zeros(20), 20: np.ones(20),
                                                               50: np.ones(20),
                                                               100: np.ones(20)})
    monkeypatch.setattr(_sequence, "training_seconds", lambda *a, **k: 1.0)
    ranker, choice = _rerank.fit_rerank("auto", data, validation, best, None, lambda m: None,
                                        metric="ndcg@10", seed=0, end=time.monotonic() + 60)
    assert choice.kept and choice.reason == ""
