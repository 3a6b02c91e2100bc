"""tk.Recipe: settings chosen on a validation slice of the training log, never the test set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from two_group_logs import two_group_log as _log

import tfrs_kit as tk
from tfrs_kit.recipe._inputs import (
    Columns,
    attach,
    attribute_table,
    split_validation,
    usable_features,
)
from tfrs_kit.recipe._report import Trial
from tfrs_kit.recipe._settings import Settings

COLUMNS = Columns(tk.Schema(), "history")


def test_validation_slice_is_each_users_latest_share_of_train():
    log = pd.DataFrame({"user_id": ["a"] * 5 + ["b"] * 2 + ["c"],
                        "item_id": ["1", "2", "3", "4", "5", "1", "2", "9"],
                        "timestamp": [5, 1, 2, 3, 4, 2, 1, 7]})
    fit, validation = split_validation(log, COLUMNS, 0.2, min_users=1)
    # a: ceil(0.2 * 5) = 1 latest (t=5, item 1); b: 1 of 2 (t=2, item 1); c alone stays.
    pairs = sorted(zip(validation["user_id"], validation["item_id"], strict=True))
    assert pairs == [("a", "1"), ("b", "1")]
    assert len(fit) + len(validation) == len(log)
    assert "c" in set(fit["user_id"]) and "c" not in set(validation["user_id"])
    assert split_validation(log, COLUMNS, 0.2, min_users=3)[1] is None  # too few users


def test_item_attributes_are_one_value_per_item_catalogue_first():
    log = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "x", "y"],
                        "price": [1.0, 3.0, 5.0], "brand": ["p", "q", "r"]})
    catalogue = pd.DataFrame({"item_id": ["y", "z"], "price": [9.0, 7.0],
                              "brand": ["R", "Z"]})
    table = attribute_table(log, "item_id", ["price", "brand"], catalogue, argument="items")
    by_id = table.set_index("item_id")
    assert by_id.loc["x", "price"] == 2.0  # a price paid per row: the item's mean
    assert by_id.loc["x", "brand"] == "q"  # otherwise the last value
    assert by_id.loc["y", "price"] == 9.0 and by_id.loc["y", "brand"] == "R"  # catalogue wins
    assert "z" in by_id.index  # never sold, still a candidate
    rows = attach({"item_id": np.array(["y", "x", "x"])}, table, "item_id", ["price"])
    assert rows["price"].tolist() == [9.0, 2.0, 2.0]


def test_constant_and_missing_features_are_dropped_with_a_reason():
    table = pd.DataFrame({"a": [1, 1, 1], "b": [None, None, None], "c": ["x", "y", "x"]})
    keep, dropped = usable_features(table, ["a", "b", "c"])
    assert keep == ["c"]
    assert dropped == {"a": "it has a single value", "b": "every value is missing"}


def test_fit_chooses_the_best_validated_trial_and_serves_it():
    log = _log()
    train, test = tk.evaluation.per_user_temporal_split(log)
    recipe = tk.Recipe(rerank=False, item_features=["price"], time_budget=None, max_trials=3,
                       max_epochs=8, blend=False, verbose=False).fit(train)
    report = recipe.report
    complete = [t for t in report.trials if t.state == "complete"]
    assert len(report.trials) == 3 and complete
    best = max(complete, key=lambda t: t.scores["ndcg@10"])
    assert report.chosen == best.settings and report.epochs == best.epochs
    assert report.validation_score == best.scores["ndcg@10"]
    assert str(report).startswith(f"Recipe: {report.chosen.describe()}, {report.epochs} epochs")
    assert len(report.to_frame()) == 3
    scores = tk.evaluate(recipe, test, train=train, k=5, metrics=["recall"]).to_dict()
    assert scores["Recipe"]["recall@5"] > 0.3  # two clean taste groups: well above chance
    index = recipe.build_index(k_max=5)
    top = index.recommend(recipe.queries().head(2), k=5).ids
    assert top.shape == (2, 5)


def test_reasons_compare_the_chosen_value_with_the_others():
    from tfrs_kit.recipe._report import _reasons

    trials = [Trial(Settings(history="mean"), "complete", 3, {"ndcg@10": 0.3}, 1.0),
              Trial(Settings(history="none"), "complete", 3, {"ndcg@10": 0.2}, 1.0),
              Trial(Settings(history="none", embedding_dim=32), "pruned", 1,
                    {"ndcg@10": 0.9}, 1.0)]
    assert _reasons(Settings(history="mean"), trials, "ndcg@10") == [
        "history=mean (best ndcg@10 0.3000; none: 0.2000)"]


def test_a_log_too_small_to_validate_trains_the_defaults_and_says_so(counting_clock):
    log = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"],
                        "timestamp": [1, 2, 1]})
    recipe = tk.Recipe(rerank=False, time_budget=None, verbose=False).fit(log)
    assert recipe.report.trials == ()
    assert "no validation slice" in recipe.report.note
    chosen = recipe.report.chosen
    # 3 rows: the smallest batch (32), one step an epoch, so the 30-epoch cap of ~600 steps.
    assert (chosen.history, chosen.batch_size, chosen.epochs) == ("mean", 32, 30)
    assert recipe.report.epochs == 30  # no trial to stop it earlier
    # A budget still holds without a trial: it stops the epochs (after the first).
    with counting_clock(1.0):  # an epoch takes at least one reading of the clock: 1 s
        quick = tk.Recipe(time_budget=1e-3, verbose=False).fit(log)
    assert quick.report.epochs == 1 and quick.model is not None


def test_a_budget_too_small_for_one_epoch_still_trains_one_model(counting_clock):
    with counting_clock(1.0):
        recipe = tk.Recipe(time_budget=0.01, max_epochs=3, verbose=False).fit(_log())
    assert len(recipe.report.trials) == 1
    assert recipe.report.trials[0].epochs == 1  # stopped after its first epoch
    assert recipe.model is not None
    assert "the time budget ended training" in recipe.report.note
    assert "(1 of 3 epochs)" in recipe.report.note and "note:" in str(recipe.report)
    # rerank="auto", the default, skips the ranking stage the budget cannot hold.
    assert recipe.report.rerank.reason.startswith("skipped: about") and recipe.cascade_ is None


def test_a_log_of_users_seen_once_trains_without_a_history():
    # Every history is empty: it used to reach the model as strings beside integer ids.
    log = pd.DataFrame({"user_id": np.arange(60), "item_id": np.arange(60) % 7,
                        "timestamp": np.arange(60)})
    recipe = tk.Recipe(rerank=False, time_budget=None, max_epochs=1, verbose=False).fit(log)
    assert recipe.report.chosen.history == "none" and "no validation slice" in recipe.report.note
    scores = recipe.as_recommender().score(np.array([0, 1]))
    assert scores.shape == (2, 7) and np.isfinite(scores).all()


def test_whole_float_ids_are_integer_ids_and_fractions_are_refused():
    log = _log()
    codes = {name: pd.factorize(log[name])[0] for name in ("user_id", "item_id")}
    as_float = log.assign(**{k: v.astype(float) for k, v in codes.items()})
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, blend=False,
                       verbose=False).fit(as_float)
    assert recipe.model.query_tower.vocabularies["user_id"].dtype == "int64"
    assert recipe.candidates()["item_id"].dtype.kind == "i"
    fractional = as_float.assign(user_id=as_float["user_id"] + 0.5)
    with pytest.raises(ValueError, match=r"`train\['user_id'\]` must hold integer or string "
                                         r"ids\. Received: .*0\.5.*astype\(str\)"):
        tk.Recipe(time_budget=None, verbose=False).fit(fractional)


def test_a_budget_that_lets_training_finish_adds_no_note(counting_clock):
    with counting_clock(1.0):  # 600 readings of the clock: far more than 2 epochs take
        recipe = tk.Recipe(rerank=False, time_budget=600, max_trials=1, max_epochs=2,
                           verbose=False).fit(_log())
    assert recipe.report.trials[0].epochs <= 2 and recipe.report.note == ""


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"metric": "ndcg@11"}, ValueError, "Did you mean 'ndcg@10'"),
    ({"time_budget": -1}, ValueError, "`time_budget` must be a finite number > 0"),
    ({"histories": []}, ValueError, "name at least one history encoder"),
    ({"histories": ["bag"]}, ValueError, "`histories` must be one of"),
    ({"item_features": "genre"}, TypeError, r"item_features=\['genre'\]"),
    ({"max_trials": 0}, ValueError, "`max_trials` must be an integer >= 1"),
    ({"verbose": 2}, TypeError, "`verbose` must be 'auto', True or False"),
    ({"verbose": 1}, TypeError, "`verbose` must be 'auto', True or False"),
    ({"verbose": "loud"}, ValueError, "`verbose` must be 'auto', True or False"),
])
def test_bad_settings_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        tk.Recipe(**kwargs)


def test_bad_data_is_a_clear_error():
    log = _log()
    with pytest.raises(ValueError, match=r"must have a column 'item_id'.*'itemid'"):
        tk.Recipe().fit(log.rename(columns={"item_id": "itemid"}))
    with pytest.raises(ValueError, match="must have a column 'genre'"):
        tk.Recipe(item_features=["genre"], verbose=False).fit(log)
    with pytest.raises(tk.NotFittedError, match="call fit"):
        tk.Recipe().model  # noqa: B018


def test_verbose_is_stored_as_a_plain_bool():
    assert tk.Recipe(verbose=np.True_).verbose is True
    assert tk.Recipe(verbose=np.False_).verbose is False


def test_attributes_keep_their_types_from_the_catalogue():
    log = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2]})
    users = pd.DataFrame({"user_id": ["a", "b"], "vip": [True, False], "age": [30, 40]})
    table = attribute_table(log, "user_id", ["vip", "age"], users, argument="users")
    assert table["vip"].dtype == bool and table["age"].dtype.kind == "i"
    more = attribute_table(log.assign(user_id=["a", "c"]), "user_id", ["vip"],
                           users.iloc[:1], argument="users")
    by_id = more.set_index("user_id")["vip"]
    assert by_id["a"] == True and pd.isna(by_id["c"])  # noqa: E712 (c is not in the table)


def test_a_feature_only_in_the_log_joins_the_catalogues():
    log = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["x", "x", "y"],
                        "price": [1.0, 3.0, 5.0]})
    catalogue = pd.DataFrame({"item_id": ["x", "y", "z"], "brand": ["p", "q", "r"]})
    table = attribute_table(log, "item_id", ["brand", "price"], catalogue, argument="items")
    by_id = table.set_index("item_id")
    assert by_id["brand"].to_dict() == {"x": "p", "y": "q", "z": "r"}
    assert by_id.loc["x", "price"] == 2.0 and by_id.loc["y", "price"] == 5.0
    assert pd.isna(by_id.loc["z", "price"])  # never sold: no price paid


def test_users_the_log_never_saw_are_scored_as_the_average_user():
    from tfrs_kit.recipe._recommender import RecipeRecommender

    vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b", "b"],
                                         "item_id": ["x", "y", "z"]})
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    recommender = RecipeRecommender(
        model, queries=pd.DataFrame({"user_id": ["a", "b"]}),
        items=pd.DataFrame({"item_id": ["x", "y", "z"]}), user_id="user_id", item_id="item_id")
    users = model.query_tower.embed({"user_id": ["a", "b"]})
    items = model.candidate_tower.embed({"item_id": ["x", "y", "z"]})
    scores = recommender.score(["b", "new"])
    np.testing.assert_allclose(scores[0], users[1] @ items.T, rtol=1e-5)
    np.testing.assert_allclose(scores[1], users.mean(axis=0) @ items.T, rtol=1e-5)


def test_content_ranks_cold_items_that_popularity_cannot():
    # Four categories; each user buys only from theirs. The test items never appear in
    # training: only their category says who will want them.
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(80)],
                          "category": [f"c{n % 4}" for n in range(80)]})
    rows = [(f"u{u}", f"i{i}", t) for u in range(120)
            for t, i in enumerate(rng.choice(np.arange(u % 4, 80, 4), 10, replace=False))]
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    warm, cold = tk.evaluation.cold_start_item_split(log, test_fraction=0.25, seed=0)
    warm = warm.merge(items, on="item_id")
    vocabs = tk.VocabularyBuilder().fit(warm, features=["user_id", "item_id", "category"])
    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id"], output_dim=8),
        tk.Tower(vocabs, features=["item_id", "category"], output_dim=8, combine="sum",
                 feature_dropout={"item_id": 0.5}))
    model.fit(warm, epochs=30, batch_size=64, learning_rate=0.2, verbose=0)
    content = model.as_recommender(warm, items=items)
    report = tk.evaluate({"content": content, "popularity": tk.baselines.Popularity().fit(warm)},
                         cold, train=warm, k=5, metrics=["recall"]).to_dict()
    # A random order of the ~70 unseen items would find a cold item in the top 5 about
    # 5/70 of the time; content must do far better, popularity cannot do it at all.
    assert report["popularity"]["recall@5"] == 0.0
    assert report["content"]["recall@5"] > 0.3


def _data(log):
    from tfrs_kit.recipe._training import Data

    return Data(log=log[["user_id", "item_id", "timestamp"]].reset_index(drop=True),
                items=attribute_table(log, "item_id", [], None, argument="items"),
                users=attribute_table(log, "user_id", [], None, argument="users"),
                columns=COLUMNS, max_history=10)


def test_warm_start_scores_exactly_as_the_factorisation_it_starts_from():
    pytest.importorskip("implicit")
    from tfrs_kit.recipe._recommender import RecipeRecommender
    from tfrs_kit.recipe._settings import warm_settings
    from tfrs_kit.recipe._training import train_final

    log = _log()
    data = _data(log)
    settings = warm_settings(Settings(), embedding_dim=8, warm_regularization=0.1,
                             warm_alpha=5.0)
    trained = train_final(data, settings, epochs=0, seed=0)  # zero epochs: the start
    assert trained.epochs_run == 0
    recommender = RecipeRecommender(trained.model, queries=data.queries(settings),
                                    items=data.candidates(settings), user_id="user_id",
                                    item_id="item_id")
    als = tk.baselines.ImplicitALS(factors=8, regularization=0.1, alpha=5.0, seed=0).fit(log)
    columns = pd.Index(recommender.item_ids).get_indexer(als.item_ids_)
    np.testing.assert_allclose(recommender.score(als.user_ids_)[:, columns],
                               als.score(als.user_ids_), rtol=1e-4, atol=1e-6)


def test_first_only_trains_on_each_pairs_earliest_event():
    log = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b"],
                        "item_id": ["x", "y", "x", "z", "x"],
                        "timestamp": [3, 2, 1, 4, 1]})
    data = _data(log)
    rows = data.rows(Settings(first_only=True))
    events = sorted(zip(rows["user_id"], rows["item_id"], rows["timestamp"], strict=True))
    assert events == [("a", "x", 1), ("a", "y", 2), ("a", "z", 4), ("b", "x", 1)]
    # The history before a's z holds x and y once each, oldest first.
    z = list(rows["item_id"]).index("z")
    assert list(rows["history"][z]) == ["x", "y"]
    queries = data.queries(Settings(first_only=True)).set_index("user_id")
    assert list(queries.loc["a", "history"]) == ["x", "y", "z"]
    assert len(data.rows(Settings())["item_id"]) == 5  # by default every event stays


def test_monitor_can_keep_the_starting_weights():
    from tfrs_kit.recipe._training import RankingMonitor

    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    start = [w.copy() for w in model.get_weights()]
    scores = iter([0.5, 0.4, 0.3])  # training only makes it worse
    monitor = RankingMonitor(lambda: {"ndcg@10": next(scores)}, "ndcg@10", patience=2,
                             deadline=float("inf"), initial=True)
    monitor.set_model(model)
    monitor.on_train_begin()
    for epoch in range(2):
        monitor.on_epoch_begin(epoch)
        model.set_weights([w + 1.0 for w in model.get_weights()])
        monitor.on_epoch_end(epoch)
    assert monitor.best_epoch == 0 and monitor.best == {"ndcg@10": 0.5}
    assert model.stop_training  # two epochs without improvement
    monitor.restore()
    for got, expected in zip(model.get_weights(), start, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("final_share", "reserved", "scoring", "epochs"), [
    (0.0, 0.0, 0.0, 10),   # 10 s epochs, deadline at 100 s: an 11th would end at 110 s
    (1.25, 0.0, 0.0, 4),   # a 5th would end at 50 s, then a 5-epoch final (12.5 s each) at 112.5
    (1.25, 0.0, 5.0, 6),   # half of each epoch scores, which the final does not: 6.25 s each
    (0.0, 75.0, 0.0, 2),   # a 3rd would end at 30 s, and the 75 s kept for another final at 105
])
def test_a_trial_leaves_time_for_its_own_final_training(monkeypatch, final_share, reserved,
                                                        scoring, epochs):
    import types

    from tfrs_kit.recipe import _training

    clock = [0.0]
    monkeypatch.setattr(_training, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    scores = iter(np.linspace(0.1, 0.9, 20))  # always improving: patience never stops it

    def score():
        clock[0] += scoring
        return {"ndcg@10": next(scores)}

    monitor = _training.RankingMonitor(score, "ndcg@10",
                                       patience=2, deadline=100.0, final_share=final_share,
                                       reserved=reserved)
    monitor.set_model(model)
    model.stop_training = False
    trained = 0
    while not model.stop_training:
        monitor.on_epoch_begin(trained)
        clock[0] += 10.0 - scoring
        monitor.on_epoch_end(trained)
        trained += 1
    assert trained == epochs


def test_candidate_order_follows_the_logs_shape():
    from tfrs_kit.recipe._settings import HISTORY_ENCODERS, candidate_settings

    base = Settings(item_features=("genre",), id_dropout=0.2)
    plain = candidate_settings(base, HISTORY_ENCODERS)
    assert plain[0] == base and not any(s.warm_start or s.first_only for s in plain)
    assert plain[1].history == "sequence"
    shaped = candidate_settings(base, HISTORY_ENCODERS, repeats=True, warm=True)
    assert shaped[0] == base
    assert shaped[1].first_only and not shaped[1].warm_start
    assert shaped[2].warm_start and shaped[2].history == "none"
    assert shaped[2].item_features == () and shaped[2].epochs <= base.epochs
    assert all(s.first_only for s in shaped[3:])  # the variants build on first-only
    sparse = candidate_settings(base, HISTORY_ENCODERS, warm=True, sparse=True)
    assert sparse[0].warm_start and sparse[1] == base  # a long tail: the factorisation first
    short = candidate_settings(base, HISTORY_ENCODERS, warm=True, short=True, sparse=True)
    assert short[0].history == "sequence" and short[1].warm_start and short[2] == base
    assert candidate_settings(base, ("mean",), short=True)[0] == base  # no sequence to try
    no_id = [s for s in plain if not s.user_id]
    assert no_id and all(s.share_history for s in no_id)


def test_a_shared_history_reads_the_candidate_item_table():
    from tfrs_kit.recipe._training import build_model

    data = _data(_log())
    settings = Settings(user_id=False, share_history=True, embedding_dim=8)
    model = build_model(data, settings, data.rows(settings))
    history = model.query_tower.encoders["history"]
    item = model.candidate_tower.encoders["item_id"]
    assert history.embedding is item.embedding
    unshared = build_model(data, Settings(user_id=False), data.rows(Settings()))
    assert (unshared.query_tower.encoders["history"].embedding
            is not unshared.candidate_tower.encoders["item_id"].embedding)


def test_the_warm_start_is_tried_only_where_a_query_may_go_without_history():
    pytest.importorskip("implicit")
    train = _log()
    default = tk.Recipe(rerank=False, time_budget=None, max_trials=2, max_epochs=1,
                        verbose=False).fit(train)
    # The default recipe and the warm start are the first two, in an order set by sparsity.
    assert sorted(t.settings.warm_start for t in default.report.trials) == [False, True]
    mean_only = tk.Recipe(rerank=False, histories=["mean"], time_budget=None, max_trials=2,
                          max_epochs=1, verbose=False).fit(train)
    assert not any(t.settings.warm_start for t in mean_only.report.trials)
    assert all(t.settings.history == "mean" for t in mean_only.report.trials)


def test_a_diverged_setting_is_left_behind_and_all_diverged_is_a_clear_error(monkeypatch):
    from tfrs_kit.recipe import _search

    real, calls = _search.train, []

    def first_diverges(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("the loss became NaN")
        return real(*args, **kwargs)

    monkeypatch.setattr(_search, "train", first_diverges)
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=2, max_epochs=1, verbose=False)
    report = recipe.fit(_log()).report
    assert [t.state for t in report.trials] == ["diverged", "complete"]
    assert report.chosen == report.trials[1].settings

    def always(*args, **kwargs):
        raise FloatingPointError("the loss became NaN")

    monkeypatch.setattr(_search, "train", always)
    with pytest.raises(FloatingPointError, match="every setting tried \\(2\\) diverged"):
        tk.Recipe(rerank=False, time_budget=None, max_trials=2, max_epochs=1,
                  verbose=False).fit(_log())


def test_the_logs_item_counts_decide_whether_the_factorisation_goes_first():
    pytest.importorskip("implicit")
    from tfrs_kit.recipe._search import _optuna, _study

    sparse = pd.DataFrame({"user_id": [f"u{n // 4}" for n in range(80)],
                           "item_id": [f"i{n}" for n in range(80)],  # each item once
                           "timestamp": range(80)})
    dense = _log(per_user=12)  # 480 events over 30 items: 16 a median item
    for log, warm_first in ((sparse, True), (dense, False)):
        study, _ = _study(_optuna(), _data(log), base=Settings(), histories=("none", "mean"),
                          features=((), ()), seed=0)
        first = study.trials[0].system_attrs["fixed_params"]
        assert first["warm_start"] is warm_first
