"""The training recipe's features and options: history, timestamps, negatives, schedules."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.retrieval._fitting import early_stopping as _early_stopping
from tfrs_kit.retrieval._in_memory import hold_out as _hold_out
from tfrs_kit.retrieval._negatives import NegativePool


def test_history_is_causal_and_truncated():
    log = pd.DataFrame({"user_id": ["a", "b", "a", "a", "a"],
                        "item_id": ["w", "x", "y", "z", "q"],
                        "timestamp": [4, 1, 1, 2, 3]})  # rows out of time order
    out = tk.HistoryBuilder(max_length=2).transform(log)
    assert [h.tolist() for h in out["history"]] == [["z", "q"], [], [], ["y"], ["y", "z"]]
    users = tk.HistoryBuilder(max_length=3).for_users(log)
    histories = [h.tolist() for h in users["history"]]
    assert dict(zip(users["user_id"], histories, strict=True)) == {
        "a": ["z", "q", "w"], "b": ["x"]}


def test_history_ties_keep_row_order_and_timestamp_is_optional():
    log = {"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "timestamp": [5, 5, 5]}
    assert [h.tolist() for h in tk.HistoryBuilder().transform(log)["history"]] == [
        [], ["x"], ["x", "y"]]
    no_time = tk.HistoryBuilder(timestamp=None).transform({k: log[k] for k in ("user_id",
                                                                               "item_id")})
    assert no_time["history"][2].tolist() == ["x", "y"]


def test_history_bad_input():
    with pytest.raises(ValueError, match="`max_length` must be an integer >= 1"):
        tk.HistoryBuilder(max_length=0)
    with pytest.raises(ValueError, match="must have a column 'timestamp'"):
        tk.HistoryBuilder().transform({"user_id": ["a"], "item_id": ["x"]})


def test_tower_cuts_histories_longer_than_max_length():
    vocabs = tk.VocabularyBuilder().fit({"h": [["a", "b", "c"]]}, features={"h": "multi"})
    tower = tk.Tower(vocabs, features=["h"], output_dim=4, max_length=2)
    long = tower({"h": tf.ragged.constant([["a", "b", "c"]])}).numpy()
    cut = tower({"h": tf.ragged.constant([["b", "c"]])}).numpy()
    np.testing.assert_allclose(long, cut)


def test_timestamp_feature_handles_nan_and_cycles():
    vocabs = tk.VocabularyBuilder().fit({"t": np.array([0.0, 3600.0, 86400.0])},
                                        features={"t": "timestamp"})
    assert vocabs["t"].kind == "timestamp" and vocabs["t"].mean == pytest.approx(30000.0)
    tower = tk.Tower(vocabs, features=["t"], output_dim=4, embedding_dim=4)
    encoder = tower.encoders["t"]
    raw = encoder.raw(tf.constant([0.0, 86400.0, np.nan, 6 * 3600.0])).numpy()
    std = vocabs["t"].std
    np.testing.assert_allclose(raw[:, 0], [-30000.0 / std, 56400.0 / std, 0.0,
                                           (21600.0 - 30000.0) / std], rtol=1e-5)
    np.testing.assert_allclose(raw[0, 1:3], [0.0, 1.0], atol=1e-6)  # midnight
    np.testing.assert_allclose(raw[1, 1:3], raw[0, 1:3], atol=1e-6)  # same time of day
    np.testing.assert_allclose(raw[3, 1:3], [1.0, 0.0], atol=1e-6)  # 6 am: a quarter day
    out = encoder(tf.constant([0.0, 86400.0, np.nan])).numpy()
    assert out.shape == (3, 4) and np.all(np.isfinite(out))


def test_numeric_encoding_is_a_bucket_embedding_plus_a_direction_starting_at_zero():
    values = np.array([1.0, 2.0, 3.0, 4.0, 1000.0])
    vocabs = tk.VocabularyBuilder(num_buckets=2).fit({"x": values}, features={"x": "numeric"})
    encoder = tk.Tower(vocabs, features=["x"], output_dim=3).encoders["x"]
    out = encoder(tf.constant([1.0, 2.0, 1000.0, np.nan])).numpy()
    table = encoder.buckets.get_weights()[0]
    # Untrained, the direction is zero: each value is its bucket's embedding (NaN: the last).
    np.testing.assert_allclose(out, table[[0, 0, 1, 2]], atol=1e-7)
    raw = encoder.raw(tf.constant([1.0, 1000.0, -1e9, np.nan])).numpy()[:, 0]
    mean, std = values.mean(), vocabs["x"].std
    np.testing.assert_allclose(raw, [(1.0 - mean) / std, (1000.0 - mean) / std, -5.0, 0.0],
                               rtol=1e-5)
    encoder.linear.set_weights([np.ones((1, 3), np.float32)])
    moved = encoder(tf.constant([1.0])).numpy()
    np.testing.assert_allclose(moved, table[[0]] + raw[0], rtol=1e-5)


def test_unknown_text_tokens_encode_finitely():
    vocabs = tk.VocabularyBuilder().fit({"t": ["toy story"]}, features={"t": "text"})
    out = tk.Tower(vocabs, features=["t"], output_dim=4)({"t": tf.constant(["zzz qqq", ""])})
    assert np.all(np.isfinite(out.numpy()))


def _model(log, **kwargs):
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"])
    return tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=8),
                                tk.Tower(vocabs, features=["item_id"], output_dim=8), **kwargs)


def _top1_in_group(model, log):
    recommender = model.as_recommender(log)
    users = np.unique(log["user_id"])
    top = recommender.item_ids[np.argmax(recommender.score(users), axis=1)]
    pairs = zip(users, top, strict=True)
    return float(np.mean([int(u[1:]) % 2 == int(i[1:]) // 10 for u, i in pairs]))


def test_hard_negatives_keep_the_top_scoring_negatives():
    log = {"user_id": np.array([f"u{i}" for i in range(12)], dtype=object),
           "item_id": np.array([f"i{i}" for i in range(12)], dtype=object)}
    model = _model(log, num_hard_negatives=3, logq_correction=False)
    batch = {name: tf.constant(values) for name, values in log.items()}
    query, candidate = (t.numpy() for t in model(batch))
    scores = query @ candidate.T
    expected = 0.0
    for row in range(len(scores)):
        negatives = np.sort(np.delete(scores[row], row))[-3:]
        logits = np.r_[scores[row, row], negatives]
        expected -= logits[0] - np.log(np.sum(np.exp(logits)))
    loss = float(model.compute_loss(batch, training=True))
    assert loss == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("options", [
    {"num_random_negatives": 16},
    {"num_random_negatives": 16, "remove_accidental_hits": True, "logq_correction": False},
])
def test_random_negatives_still_learn(checkerboard, options):
    tf.keras.utils.set_random_seed(2)
    model = _model(checkerboard, **options)
    history = model.fit(checkerboard, epochs=3, batch_size=128, seed=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert _top1_in_group(model, checkerboard) == 1.0


def test_random_negatives_come_from_the_given_catalogue(checkerboard):
    model = _model(checkerboard, num_random_negatives=4)
    catalogue = {"item_id": np.array(["i0", "i1", "i2"], dtype=object)}
    model.fit(checkerboard, epochs=1, batch_size=512, candidates=catalogue, verbose=0)
    assert model._negatives.size == 3


def test_negative_pool_draws_the_catalogue_uniformly_with_its_frequencies():
    catalogue = {"item_id": ["x", "y", "x", "z"], "genre": ["a", "b", "c", "d"]}
    pool = NegativePool.build(catalogue, item_id="item_id", features=["genre"],
                              frequencies=pd.Series({"x": 0.5, "y": 0.5}))
    assert pool.size == 3
    tf.random.set_seed(0)
    drawn, probability = pool.draw(3000)
    ids = drawn["item_id"].numpy().astype(str)
    shares = pd.Series(ids).value_counts(normalize=True)
    assert set(shares.index) == {"x", "y", "z"} and shares.between(0.28, 0.39).all()
    np.testing.assert_allclose(probability.numpy(), [{"x": 0.5, "y": 0.5, "z": 0.0}[i]
                                                     for i in ids])
    genres = dict(zip(ids, drawn["genre"].numpy().astype(str), strict=True))
    assert genres == {"x": "c", "y": "b", "z": "d"}  # each candidate's last row
    # Two queries: a column appears 2 * frequency times in the batch, 1/3 times per draw;
    # per draw (3 draws: 2 queries, 1 random negative) so TFRS's clip to [1e-6, 1] keeps it.
    mixed = pool.mixed_probability(tf.constant([0.5, 0.25]), tf.constant([0.0]), tf.constant(2))
    np.testing.assert_allclose(mixed.numpy(), np.array([1.0 + 1 / 3, 0.5 + 1 / 3, 1 / 3]) / 3,
                               rtol=1e-6)


def test_negative_pool_needs_candidates():
    with pytest.raises(ValueError, match="`candidates` must have at least one row"):
        NegativePool.build({"item_id": np.array([], dtype=object)}, item_id="item_id",
                           features=["item_id"], frequencies=None)


def test_shared_embeddings_are_one_table():
    log = {"user_id": ["a", "b"], "item_id": ["x", "y"]}
    vocabs = tk.VocabularyBuilder().fit(log).alias("history", "item_id", kind="multi")
    query = tk.Tower(vocabs, features=["user_id", "history"], output_dim=4)
    candidate = tk.Tower(vocabs, features=["item_id"], output_dim=4)
    tk.TwoTowerRetrieval(query, candidate, share_embeddings={"history": "item_id"})
    assert query.encoders["history"].embedding is candidate.encoders["item_id"].embedding


def test_shared_embeddings_need_the_same_tokens():
    log = {"user_id": ["a"], "item_id": ["x"], "history": [["y"]]}
    vocabs = tk.VocabularyBuilder().fit(log)
    with pytest.raises(ValueError, match=r"same tokens.*vocabularies.alias\('history'"):
        tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "history"], output_dim=4),
                             tk.Tower(vocabs, features=["item_id"], output_dim=4),
                             share_embeddings={"history": "item_id"})


def test_validation_fraction_and_early_stopping(checkerboard):
    model = _model(checkerboard)
    history = model.fit(checkerboard, epochs=30, batch_size=256, validation_fraction=0.2,
                        early_stopping_patience=1, learning_rate=2.0,
                        learning_rate_schedule="cosine", seed=0, verbose=0)
    assert "val_loss" in history.history
    assert len(history.history["loss"]) < 30  # stopped early


def test_fit_compiles_with_adagrad_once_and_keeps_its_optimizer(checkerboard):
    model = _model(checkerboard)
    model.fit(checkerboard, epochs=1, batch_size=1024, verbose=0)
    optimizer = model.optimizer
    assert isinstance(optimizer, tf.keras.optimizers.Adagrad)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    model.fit(checkerboard, epochs=1, batch_size=1024, verbose=0)  # trains on
    assert model.optimizer is optimizer and int(optimizer.iterations) == 2 * 4
    with pytest.raises(ValueError, match="`learning_rate` must be None when the model is already"):
        model.fit(checkerboard, learning_rate=0.05, verbose=0)


def test_cosine_schedule_decays_over_every_step_of_fit(checkerboard):
    model = _model(checkerboard)
    model.fit(checkerboard, epochs=2, batch_size=1000, learning_rate=0.5,
              learning_rate_schedule="cosine", verbose=0)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, tf.keras.optimizers.schedules.CosineDecay)
    assert (schedule.initial_learning_rate, schedule.decay_steps) == (0.5, 2 * 4)


@pytest.mark.parametrize("setting", [{"learning_rate": 0.1},
                                     {"learning_rate_schedule": "constant"}])
def test_optimizer_settings_on_a_compiled_model_are_refused(checkerboard, setting):
    model = _model(checkerboard)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    (argument,) = setting
    with pytest.raises(ValueError, match=rf"`{argument}` must be None when the model is already "
                       r"compiled\..*pass the optimizer with its learning rate to `compile`"):
        model.fit(checkerboard, verbose=0, **setting)
    assert model.candidate_frequencies_ is None  # refused before fit learns anything


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"early_stopping_patience": 2}, ValueError, "come with validation_data"),
    ({"early_stopping_patience": -1, "validation_fraction": 0.1}, ValueError,
     "`early_stopping_patience` must be an integer >= 0 or None"),
    ({"early_stopping_patience": 1.5, "validation_fraction": 0.1}, TypeError,
     "`early_stopping_patience` must be an integer >= 0 or None"),
    ({"learning_rate_schedule": "cosin"}, ValueError, "Did you mean 'cosine'"),
    ({"learning_rate_schedule": 1}, TypeError, "`learning_rate_schedule` must be one of"),
    ({"learning_rate": 0}, ValueError, "`learning_rate` must be a finite number > 0 or None"),
    ({"learning_rate": "0.1"}, TypeError, "`learning_rate` must be a finite number > 0"),
    ({"validation_fraction": 1.5}, ValueError,
     r"`validation_fraction` must be a finite number > 0\.0 and < 1\.0 or None"),
    ({"validation_fraction": 0.1, "validation_data": {"user_id": ["u1"], "item_id": ["i1"]}},
     ValueError, "`validation_fraction` must be None when validation_data is given"),
])
def test_bad_recipe_settings(checkerboard, kwargs, error, message):
    model = _model(checkerboard)
    with pytest.raises(error, match=message):
        model.fit(checkerboard, **kwargs)
    assert model.candidate_frequencies_ is None and model.optimizer is None  # nothing done


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"num_hard_negatives": 0}, ValueError,
     "`num_hard_negatives` must be an integer >= 1 or None"),
    ({"num_hard_negatives": True}, TypeError, "`num_hard_negatives` must be an integer"),
    ({"num_random_negatives": -1}, ValueError, "`num_random_negatives` must be an integer >= 0"),
    ({"num_random_negatives": 4.0}, TypeError, "`num_random_negatives` must be an integer"),
    ({"temperature": 0}, ValueError, "`temperature` must be a finite number > 0 or None"),
    ({"temperature": float("nan")}, ValueError, "`temperature` must be a finite number > 0"),
    ({"temperature": float("inf")}, ValueError, "`temperature` must be a finite number > 0"),
    ({"temperature": "0.1"}, TypeError, "`temperature` must be a finite number > 0"),
])
def test_bad_model_settings(checkerboard, kwargs, error, message):
    with pytest.raises(error, match=message):
        _model(checkerboard, **kwargs)


def test_checked_settings_are_stored_as_plain_python_values(checkerboard):
    model = _model(checkerboard, temperature=np.float32(0.5), num_hard_negatives=np.int64(3),
                   num_random_negatives=np.int64(2))
    assert type(model.temperature) is float and model.temperature == 0.5
    assert type(model.num_hard_negatives) is int and type(model.num_random_negatives) is int
    assert model.task._temperature == 0.5


def test_hold_out_splits_rows_at_random_reproducibly():
    table = {"row": np.arange(10_000), "label": np.arange(10_000) % 7}
    train, held_out = _hold_out(table, 0.25, seed=3)
    assert sorted(np.r_[train["row"], held_out["row"]]) == list(range(10_000))
    assert 2300 < len(held_out["row"]) < 2700  # about a quarter
    np.testing.assert_array_equal(held_out["label"], held_out["row"] % 7)  # rows stay whole
    again, _ = _hold_out(table, 0.25, seed=3)
    other, _ = _hold_out(table, 0.25, seed=4)
    np.testing.assert_array_equal(again["row"], train["row"])
    assert not np.array_equal(other["row"], train["row"])


def test_early_stopping_watches_the_validation_loss():
    assert _early_stopping(None) == []
    (callback,) = _early_stopping(0)
    assert isinstance(callback, tf.keras.callbacks.EarlyStopping)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_loss", 0, True)


def test_default_compile_uses_adagrad_at_the_given_rate(checkerboard):
    model = _model(checkerboard)
    model._compile_default(None, None, steps=10)
    assert isinstance(model.optimizer, tf.keras.optimizers.Adagrad)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    model._compile_default(0.3, "cosine", steps=10)
    schedule = model.optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.3) and float(schedule(10)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.15)  # half-way down the cosine


def test_feature_missing_at_serving_is_named(checkerboard):
    log = dict(checkerboard, history=tk.HistoryBuilder(timestamp=None).transform(
        checkerboard)["history"])
    vocabs = tk.VocabularyBuilder().fit(log, features={"user_id": "categorical",
                                                       "item_id": "categorical",
                                                       "history": "multi"})
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id", "history"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    index = tk.IndexBuilder(k_max=5).build(model, {"item_id": ["i1", "i2", "i3", "i4", "i5"]})
    with pytest.raises(ValueError, match="must have a column 'history'"):
        index.recommend({"user_id": ["u1"]}, k=2)
    got = index.recommend({"user_id": ["u1", "new"], "history": [["i1", "i2"], []]}, k=2)
    assert got.ids.shape == (2, 2)
