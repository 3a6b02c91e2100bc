"""``Recipe(rerank=...)``: the ranking stage trained, measured and kept inside ``fit``."""

import copy
import dataclasses
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.ranking._scoring import history_positions, history_similarity
from tfrs_kit.recipe import _rerank


def _popular_log(n=2400, users=80, items=150, seed=0):
    """Half the events go to six hit items: the ranker reads the items' popularity,
    the retriever (no blend) does not."""
    rng = np.random.default_rng(seed)
    item = np.where(rng.random(n) < 0.5, rng.integers(0, 6, n), rng.integers(6, items, n))
    return pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, users, n)],
                         "item_id": [f"i{i}" for i in item], "timestamp": np.arange(n)})


@pytest.fixture(scope="module")
def fitted():
    log = _popular_log()
    recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, blend=False,
                       histories=["none"], rerank=True, verbose=False).fit(log)
    return log, recipe


def test_rerank_argument_is_validated():
    for bad in ("yes", 1, None):
        with pytest.raises((ValueError, TypeError), match="rerank"):
            tk.Recipe(rerank=bad)
    assert tk.Recipe(rerank="on").rerank is True and tk.Recipe(rerank="off").rerank is False
    assert tk.Recipe().rerank == "auto"  # the default: kept where it lifts validation


def test_only_a_forced_stage_takes_time_from_the_search(monkeypatch):
    """Under a time budget the search ends 25% of it earlier for rerank=True, to leave the
    stage its time; "auto" takes none (the stage runs in what is left, or is skipped)."""
    from tfrs_kit.recipe import _fit_memory

    class Stop(Exception):
        pass

    deadlines = {}

    def search(*args, deadline, **kwargs):
        deadlines[mode] = deadline
        raise Stop

    monkeypatch.setattr(_fit_memory, "search", search)
    monkeypatch.setattr(_fit_memory.time, "monotonic", lambda: 100.0)
    for mode in (True, "auto", False):
        with pytest.raises(Stop):
            tk.Recipe(time_budget=60, rerank=mode, verbose=False).fit(_popular_log())
    assert deadlines == {True: 100 + 60 * 0.65, "auto": 100 + 60 * 0.9, False: 100 + 60 * 0.9}


def test_the_report_says_what_the_stage_measured_and_chose(fitted):
    _, recipe = fitted
    choice = recipe.report.rerank
    assert choice.mode is True and choice.reason == "" and choice.kept  # forced
    assert choice.retrieve_k in choice.scores and choice.score == max(choice.scores.values())
    assert choice.loss == "listwise" and "item_log_count" in choice.features
    assert recipe.cascade_ is not None and recipe.cascade_.retrieve_k == choice.retrieve_k
    assert "rerank kept" in str(recipe.report) and f"retrieve_k={choice.retrieve_k}" in str(
        recipe.report)


def _stage(recipe, monkeypatch, scores, mode, seen=None):
    """fit_rerank on the fitted Recipe's data less its validation slice, with each
    validation user's scores given (a number: every user's); ``seen`` collects the
    logs the measured cascade learned from and is served after, and the served
    ranker's arguments."""
    from tfrs_kit.ranking import _protocol
    from tfrs_kit.recipe._inputs import split_validation
    from tfrs_kit.recipe._training import Trained

    seen = {} if seen is None else seen

    def measured(cls, retriever, log, **kwargs):
        seen.update(log=log, served_log=kwargs["served_log"])
        return copy.copy(recipe.cascade_)  # the stage must not change the fixture's

    def served(stage, earlier, later, **kwargs):
        seen.update(stage=stage, earlier=earlier, later=later)
        return fit_ranker(stage, earlier, later, **kwargs)

    fit_ranker = _protocol.fit_ranker
    monkeypatch.setattr(tk.Cascade, "fit", classmethod(measured))
    monkeypatch.setattr(_protocol, "fit_ranker", served)
    monkeypatch.setattr(_rerank, "_measure", lambda *a, **k: {
        key: np.full(40, value) if np.isscalar(value) else np.asarray(value, float)
        for key, value in scores.items()})
    data = recipe._data
    fit, validation = split_validation(data.log, data.columns, 0.2, min_users=10)
    best = Trained(recipe.model, recipe.settings, 1, {}, 1.0, epochs_run=1, final_seconds=1.0)
    return _rerank.fit_rerank(mode, dataclasses.replace(data, log=fit), validation, best, None,
                              lambda m: None, metric="ndcg@10", seed=0, end=None)


def test_auto_keeps_a_ranker_that_lifts_validation(fitted, monkeypatch):
    _, recipe = fitted
    ranker, choice = _stage(recipe, monkeypatch, {0: 0.30, 20: 0.31, 50: 0.33}, "auto")
    assert isinstance(ranker, tk.Ranker) and choice.kept and choice.retrieve_k == 50
    assert choice.base == 0.30 and choice.score == 0.33 and choice.reason == ""


def test_the_ranker_is_measured_a_ranking_slice_before_the_one_served(fitted, monkeypatch):
    """The measured cascade learns from the fit log less each user's latest 20% (so it
    stands to validation as the served ranker, a slice staler, stands to what follows
    the log); a kept ranker learns again on validation, over the measured first stage."""
    log, recipe = fitted
    seen = {}
    ranker, choice = _stage(recipe, monkeypatch, {0: 0.30, 20: 0.35}, "auto", seen)
    assert choice.kept and ranker is not recipe.cascade_.ranker
    # Reference: each user's time-ordered rows; the last 20% (rounded up) of their rows
    # before validation's are left out, the first row always kept.
    rows = log.sort_values("timestamp")
    held = rows.groupby("user_id").cumcount(ascending=False) < np.ceil(
        0.2 * rows.groupby("user_id")["item_id"].transform("size"))
    validation = rows[held & (rows.groupby("user_id")["item_id"].transform("size") > 1)]
    fit = rows.drop(validation.index)
    n = fit.groupby("user_id")["item_id"].transform("size")
    earlier = fit[(fit.groupby("user_id").cumcount() < n - np.ceil(0.2 * n)) | (n == 1)]
    key = ["user_id", "item_id", "timestamp"]
    assert sorted(map(tuple, seen["log"][key].to_numpy().tolist())) == sorted(
        map(tuple, earlier[key].to_numpy().tolist()))
    assert sorted(map(tuple, seen["later"][key].to_numpy().tolist())) == sorted(
        map(tuple, validation[key].to_numpy().tolist()))
    assert len(seen["earlier"]) == len(fit) and seen["stage"] is recipe.model
    assert sorted(map(tuple, seen["served_log"][key].to_numpy().tolist())) == sorted(
        map(tuple, fit[key].to_numpy().tolist()))  # measured as of the whole fit log
    dropped, _ = _stage(recipe, monkeypatch, {0: 0.30, 20: 0.30}, "auto")
    assert dropped is None  # none learns again when none is kept


def test_auto_drops_a_ranker_that_does_not_lift_validation(fitted, monkeypatch):
    _, recipe = fitted
    ranker, choice = _stage(recipe, monkeypatch, {0: 0.30, 20: 0.28, 50: 0.30}, "auto")
    assert ranker is None and not choice.kept and choice.retrieve_k == 50  # the tie: no lift
    ranker, choice = _stage(recipe, monkeypatch, {0: 0.30, 20: 0.28, 50: 0.29}, True)
    assert isinstance(ranker, tk.Ranker) and choice.kept  # forced


def test_auto_keeps_only_a_lift_above_the_validation_users_noise(fitted, monkeypatch):
    """The mean gain must beat 1.645 standard errors of the paired per-user difference."""
    _, recipe = fitted
    rng = np.random.default_rng(0)
    base = rng.random(400)
    noise = rng.normal(0.0, 0.2, 400)
    noise -= noise.mean()
    for gain, kept in ((0.0, False), (0.01, False), (0.03, True)):
        ranker, choice = _stage(recipe, monkeypatch, {0: base, 20: base + noise + gain}, "auto")
        assert choice.score - choice.base == pytest.approx(gain)
        assert choice.kept is kept and (ranker is not None) is kept
    margin = 1.645 * np.std(noise, ddof=1) / np.sqrt(400)
    assert _rerank.lift_margin(noise + 0.03) == pytest.approx(margin)
    assert 0.01 < margin < 0.03
    assert _rerank.lift_margin(np.array([0.5])) == np.inf  # one user: never kept


def test_per_user_scores_average_to_evaluates_metric(fitted, monkeypatch):
    """The per-user metric the keep/drop decision compares is tk.evaluate's, per user,
    also when the users are scored a few at a time."""
    log, recipe = fitted
    from tfrs_kit.recipe import _recommender
    from tfrs_kit.recipe._recommender import RecipeRecommender, per_user_scores

    seen, held = tk.evaluation.per_user_temporal_split(log, test_fraction=0.2, min_train=1)
    seen, held = pd.DataFrame(seen), pd.DataFrame(held)
    recommender = RecipeRecommender(recipe.model, queries=recipe.queries(),
                                    items=recipe.candidates(), user_id="user_id",
                                    item_id="item_id")
    columns = recipe.columns
    monkeypatch.setattr(_recommender, "_SCORED_AT_ONCE", 7 * len(recommender.item_ids))
    for metric in ("ndcg@10", "recall@20"):
        got = per_user_scores(recommender, seen, held, columns, metric)
        name, k = metric.split("@")
        expected = tk.evaluate({"m": recommender}, held, train=seen, k=int(k), metrics=[name],
                               verbose=False).to_dict()["m"][metric]
        assert len(got) == held["user_id"].nunique()
        assert got.mean() == pytest.approx(expected, rel=1e-6)


def test_auto_skips_the_stage_when_the_time_budget_cannot_hold_it(fitted, monkeypatch):
    _, recipe = fitted
    from tfrs_kit.recipe._inputs import split_validation
    from tfrs_kit.recipe._training import Trained

    data = recipe._data
    _, validation = split_validation(data.log, data.columns, 0.2, min_users=10)
    best = Trained(recipe.model, recipe.settings, 1, {}, 100.0, epochs_run=1,
                   final_seconds=100.0)
    ranker, choice = _rerank.fit_rerank("auto", data, validation, best, None, lambda m: None,
                                        metric="ndcg@10", seed=0, end=time.monotonic() + 150)
    assert ranker is None and not choice.kept and "time budget" in choice.reason


def test_forced_rerank_on_a_log_without_a_validation_slice_names_the_argument():
    log = pd.DataFrame({"user_id": ["a", "b", "c", "a"], "item_id": ["x", "y", "z", "y"],
                        "timestamp": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="rerank"):
        tk.Recipe(time_budget=None, max_trials=1, max_epochs=1, rerank=True,
                  verbose=False).fit(log)


def _expected_top(recipe, users, k):
    """The retriever's top retrieve_k (seen items left out), ordered by the ranker's own
    scores (computed here from its towers and head), the rest after."""
    cascade, c = recipe.cascade_, recipe.columns
    retriever, ranker, n = cascade.retriever, cascade.ranker, cascade.retrieve_k
    queries = recipe.queries().set_index(c.user_id).loc[users].reset_index()
    items = cascade.with_features(recipe.candidates())
    item_ids = np.asarray(items[c.item_id])
    scores = (retriever.query_tower.embed(queries, verbose=False)
              @ retriever.candidate_tower.embed(items, verbose=False).T)
    seen = recipe._seen().groupby(c.user_id)[c.item_id].agg(set)
    out = []
    for row, user in enumerate(users):
        s = np.where(np.isin(item_ids, list(seen.get(user, set()))), -np.inf, scores[row])
        top = np.argsort(-s, kind="stable")[:n]
        similarity = None
        if ranker.history_feature:
            pos = history_positions(queries[ranker.history_feature][row:row + 1],
                                    pd.Index(item_ids))
            emb = retriever.candidate_tower.embed(items, verbose=False)
            similarity = history_similarity(emb[np.maximum(pos, 0)], pos >= 0,
                                            emb[top][None], ranker.recent)
        ranked = ranker.rerank(
            tf.constant(ranker.query_tower.embed(queries.iloc[[row]], verbose=False)),
            tf.constant(ranker.candidate_tower.embed(items, verbose=False)[top][None]),
            tf.constant(s[top][None].astype(np.float32)), tf.constant(np.isfinite(s[top])[None]),
            similarity, training=False).numpy()[0]
        out.append(item_ids[top[np.argsort(-ranked, kind="stable")]][:k])
    return np.array(out)


def test_recommend_ranks_the_retrievers_top_k_by_the_ranker(fitted):
    _, recipe = fitted
    users = list(recipe.queries()["user_id"][:6])
    got = recipe.recommend(users, k=5).ids
    np.testing.assert_array_equal(got, _expected_top(recipe, users, 5))


def test_evaluate_scores_the_cascade(fitted):
    _, recipe = fitted
    recommender = recipe.as_recommender()
    users = list(recipe.queries()["user_id"][:6])
    scores = recommender.score(np.asarray(users))
    top = np.asarray(recommender.item_ids)[np.argsort(-scores, axis=1, kind="stable")[:, :5]]
    np.testing.assert_array_equal(top, _expected_top(recipe, users, 5))


def test_build_index_serves_the_cascade_and_records_retrieve_k(fitted):
    _, recipe = fitted
    assert recipe.build_index(k_max=5).retrieve_k == recipe.cascade_.retrieve_k
    assert recipe.build_index().k_max == recipe.cascade_.retrieve_k  # at most retrieve_k


def test_save_and_load_keep_the_cascade(fitted, tmp_path):
    _, recipe = fitted
    recipe.save(tmp_path / "model")
    loaded = tk.load(tmp_path / "model")
    users = list(recipe.queries()["user_id"][:6])
    assert loaded.cascade_ is not None
    assert loaded.cascade_.retrieve_k == recipe.cascade_.retrieve_k
    assert loaded.report.rerank == recipe.report.rerank
    np.testing.assert_array_equal(loaded.recommend(users, k=5).ids,
                                  recipe.recommend(users, k=5).ids)
    np.testing.assert_allclose(loaded.recommend(users, k=5).scores,
                               recipe.recommend(users, k=5).scores, rtol=1e-5)
    shutil.rmtree(tmp_path / "model" / "versions" / "1" / "ranker" / "weights")
    with pytest.raises(ValueError, match="ranker"):
        tk.load(tmp_path / "model")


def test_cli_train_passes_rerank_to_the_recipe(tmp_path, monkeypatch):
    from tfrs_kit import cli
    from tfrs_kit.cli._main import _parser

    seen = {}

    def recipe(**arguments):
        seen.update(arguments)
        raise KeyboardInterrupt  # stops the command before any training

    monkeypatch.setattr(tk, "Recipe", recipe)
    argv = ["train", str(tmp_path / "e.csv"), "--user", "u", "--item", "i", "--time", "t",
            "--export", str(tmp_path / "out")]
    for option, expected in (("auto", "auto"), ("on", True), ("off", False), (None, "auto")):
        seen.clear()
        assert cli.main(argv if option is None else [*argv, "--rerank", option]) == 130
        assert tk.recipe._rerank.check_rerank(seen["rerank"]) == expected
        assert seen["user_id"] == "u" and seen["timestamp"] == "t"  # the folded options
    with pytest.raises(SystemExit):
        _parser().parse_args([*argv, "--rerank", "maybe"])


def test_evaluate_ranks_a_new_user_by_the_first_stage_alone(fitted):
    """A user the log never saw has no id or history for the ranker: the cascade's
    recommender ranks them as the Recipe without the ranking stage does (the average
    known user), and every known user through the cascade."""
    log, recipe = fitted
    recommender = recipe.as_recommender()
    known = list(recipe.queries()["user_id"][:3])
    scores = recommender.score(np.asarray([known[0], "newcomer", known[1], known[2]]))
    model, items = recipe.model, recipe.candidates()
    queries = recipe.queries()
    average = model.query_tower.embed(queries, verbose=False).mean(axis=0)
    expected = average @ model.candidate_tower.embed(items, verbose=False).T
    order = np.asarray(items["item_id"])[np.argsort(-expected, kind="stable")[:5]]
    got = np.asarray(recommender.item_ids)[np.argsort(-scores[1], kind="stable")[:5]]
    np.testing.assert_array_equal(got, order)
    top = np.asarray(recommender.item_ids)[np.argsort(-scores[[0, 2, 3]], axis=1,
                                                      kind="stable")[:, :5]]
    np.testing.assert_array_equal(top, _expected_top(recipe, known, 5))
    test = pd.DataFrame({"user_id": [known[0], "newcomer"], "item_id": ["i1", "i2"],
                         "timestamp": [10**6, 10**6]})
    report = tk.evaluate(recipe, test, train=log, k=5, metrics=["recall"]).to_dict()
    assert set(report) == {"Recipe"}
