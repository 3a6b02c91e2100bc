"""Recipe.update and tk.recipe.update: grown vocabularies, a warm start, the guard."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
from day_logs import two_days

import tfrs_kit as tk
from tfrs_kit._errors import NotFittedError
from tfrs_kit.cli import main
from tfrs_kit.recipe import _update, _update_blend
from tfrs_kit.recipe._recommender import RecipeRecommender, per_user_scores
from tfrs_kit.recipe._save import _parts
from tfrs_kit.recipe._update_blend import Refreshed

NEW_ITEMS = ("new-item-a", "new-item-b", "new-item-c")
NEW_USERS = ("new-user-a", "new-user-b")


@pytest.fixture(scope="module")
def days():
    """The first 800 events (time order) and the next 200, some by new users of new items."""
    old, new = two_days(0)
    new["item_id"] = new["item_id"].astype(object)
    new["user_id"] = new["user_id"].astype(object)
    rows = new.index.to_numpy()
    for i, item in enumerate(NEW_ITEMS):  # each new item three times
        new.loc[rows[i * 3:(i + 1) * 3], "item_id"] = item
    for i, user in enumerate(NEW_USERS):  # each new user with four events
        new.loc[rows[20 + i * 4:24 + i * 4], "user_id"] = user
    return old, new.reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(days):
    """The fastest Recipe the suite fits (blend included), fitted once for the module."""
    return tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=2,
                     verbose=False).fit(days[0])


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """Version 1 of ``fitted`` (before any update), never modified by the tests."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    fitted.save(folder)
    return folder


@pytest.fixture(scope="module")
def updated(fitted, saved, days):
    """``fitted`` (saved first) updated in memory with the new events, guard off."""
    before = _tables(fitted)
    fitted.update(days[1], tolerance=1.0)
    return fitted, before


def _copy(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _tables(recipe):
    """The id embedding tables of the towers, and the vocabularies."""
    (query, candidate), _ = _parts(recipe.model)
    c = recipe.columns
    return {"user": query.encoders[c.user_id].embedding.get_weights()[0],
            "item": candidate.encoders[c.item_id].embedding.get_weights()[0],
            "vocabularies": recipe.model.vocabularies_}


def test_vocabulary_extend_keeps_every_index_and_appends():
    vocabulary = tk.features.Vocabulary(name="item", kind="categorical",
                                        tokens=("a", "b", "c"), counts=(3, 2, 1), total=6)
    grown = vocabulary.extend(["d", "a", "e", "d"])
    assert grown.tokens == ("a", "b", "c", "d", "e")
    assert grown.counts == (4, 2, 1, 2, 1) and grown.total == 10
    np.testing.assert_array_equal(grown.index(["a", "b", "c"]), vocabulary.index(["a", "b", "c"]))
    integers = tk.features.Vocabulary(name="i", kind="categorical", tokens=(5, 7), counts=(1, 1),
                                      dtype="int64")
    assert integers.extend(np.array([7, 9])).tokens == (5, 7, 9)


def test_old_ids_keep_their_rows_and_new_ids_are_appended(saved, days):
    recipe = tk.load(saved)  # updated in memory only: the folder stays as it is
    c = recipe.columns
    before = _tables(recipe)
    recipe.update(days[1], epochs=0, tolerance=1.0)
    after = _tables(recipe)
    for side, column in (("user", c.user_id), ("item", c.item_id)):
        old, new = before["vocabularies"][column], after["vocabularies"][column]
        assert new.tokens[:len(old.tokens)] == old.tokens  # every old id keeps its index
        rows = old.size
        np.testing.assert_array_equal(after[side][:rows], before[side])  # and its row, exactly
        np.testing.assert_allclose(after[side][rows:],  # a new row: the mean of the known ones
                                   np.broadcast_to(before[side][1:].mean(0),
                                                   after[side][rows:].shape), rtol=1e-5)
    assert set(NEW_ITEMS) <= set(after["vocabularies"][c.item_id].tokens)
    assert set(NEW_USERS) <= set(after["vocabularies"][c.user_id].tokens)
    # Each id's count: its events before and in the update (each counted once).
    for column in (c.user_id, c.item_id):
        old, new = before["vocabularies"][column], after["vocabularies"][column]
        added = days[1][column].value_counts()
        expected = [count + added.get(token, 0) for token, count in
                    zip(old.tokens, old.counts, strict=True)]
        expected += [added[token] for token in new.tokens[len(old.tokens):]]
        assert list(new.counts) == expected and new.total == old.total + len(days[1])


def test_new_items_are_indexed_and_recommended(updated, days):
    recipe, _ = updated
    c = recipe.columns
    report = recipe.update_report_
    assert report.published and report.new_items == len(NEW_ITEMS)
    old, new = days
    assert report.new_users == len(set(new[c.user_id]) - set(old[c.user_id]))
    assert report.events == len(new)
    assert report.replayed == min(800, round(_update.DEFAULT_REPLAY * len(days[1])))
    assert report.late_events == 0
    candidates = recipe.candidates()[c.item_id].tolist()
    assert set(NEW_ITEMS) <= set(candidates)
    index = recipe.build_index(k_max=len(candidates))
    returned = index.recommend(recipe.queries().head(3), k=len(candidates)).ids
    assert set(NEW_ITEMS) <= {str(i) for i in np.ravel(returned)}
    top = recipe.recommend(history=[NEW_ITEMS[0]], k=len(candidates) - 1).ids
    assert set(NEW_ITEMS[1:]) <= set(top[0].tolist())


def test_a_new_user_gets_recommendations_and_seen_items_grow(updated, days):
    recipe, _ = updated
    c = recipe.columns
    recommendations = recipe.recommend(list(NEW_USERS), k=5)
    assert recommendations.ids.shape == (2, 5)
    mine = days[1][days[1][c.user_id] == NEW_USERS[0]][c.item_id].tolist()
    assert not set(mine) & set(recommendations.ids[0].tolist())  # seen items are masked
    history = recipe.queries().set_index(c.user_id).loc[NEW_USERS[0], c.history]
    assert list(history)[-len(mine):] == mine


def test_an_update_of_a_loaded_recipe_equals_the_in_memory_one(updated, saved, days, tmp_path):
    recipe, _ = updated
    folder = _copy(saved, tmp_path)
    loaded = tk.load(folder).update(days[1], tolerance=1.0, dir=folder)
    assert loaded.update_report_.version == 2 and (folder / "latest").read_text() == "2\n"
    users = recipe.queries()[recipe.columns.user_id].head(10).tolist()
    mine, theirs = recipe.recommend(users, k=5), loaded.recommend(users, k=5)
    np.testing.assert_allclose(mine.scores, theirs.scores, atol=1e-3)
    reloaded = tk.load(folder)
    np.testing.assert_allclose(reloaded.recommend(users, k=5).scores, theirs.scores, atol=1e-4)
    # Version 1 lists the fit's validation score, version 2 the guard's two scores on the
    # same events (never the re-chosen blend's score on other users under the same name).
    report, fit = loaded.update_report_, tk.recipe.versions(folder)[0]
    first = tk.load(folder, version=1).report
    assert first.update is None and fit.metrics == {"ndcg@10": first.blend.score} != {}
    assert tk.recipe.versions(folder)[1].metrics == {
        "guard ndcg@10": pytest.approx(report.updated_score),
        "guard ndcg@10 before": pytest.approx(report.serving_score)}
    assert reloaded.report.validation_score is None
    assert (f"last update: {len(days[1])} events; guard ndcg@10 {report.updated_score:.4f} "
            f"against {report.serving_score:.4f} before") in str(reloaded.report)


def test_events_already_logged_are_left_out_and_a_day_given_twice_is_refused(
        updated, saved, days, tmp_path):
    """A batch that repeats 30 logged events updates as the new events alone do (the
    in-memory update with them); the same batch again holds nothing new: refused."""
    recipe, _ = updated
    folder = _copy(saved, tmp_path)
    again = pd.concat([days[0].tail(30), days[1]])
    loaded = tk.load(folder).update(again, tolerance=1.0, dir=folder)
    report = loaded.update_report_
    assert (report.already_logged, report.events) == (30, len(days[1]))
    assert "30 already logged: left out" in str(report)
    users = recipe.queries()[recipe.columns.user_id].head(10).tolist()
    np.testing.assert_allclose(loaded.recommend(users, k=5).scores,
                               recipe.recommend(users, k=5).scores, atol=1e-3)
    with pytest.raises(ValueError, match=r"`new_events` must hold events the model has not "
                                         rf"learned from\. Received: .*all {len(again)} rows"):
        tk.recipe.update(folder, again)
    assert (folder / "latest").read_text() == "2\n"


def test_the_guard_blocks_a_broken_update_and_latest_stays(saved, days, tmp_path,
                                                           monkeypatch):
    folder = _copy(saved, tmp_path)

    def scramble(model, rows, settings, epochs, seed, slots=None):
        rng = np.random.default_rng(0)
        for weight in model.weights:
            weight.assign(rng.normal(size=weight.shape).astype(weight.dtype.as_numpy_dtype))

    monkeypatch.setattr(_update, "_fine_tune", scramble)
    # Without the blend, whose factorisation would carry the scrambled towers.
    monkeypatch.setattr(_update, "refresh_blend", lambda blend, serving, fit_data, full, base,
                        *args, **kwargs: Refreshed((None,), lambda _: base.model,
                                                                   lambda _: base.model, False))
    with pytest.raises(tk.recipe.UpdateRejected, match="not published") as caught:
        tk.recipe.update(folder, days[1])
    assert caught.value.report.updated_score < caught.value.report.serving_score
    assert (folder / "latest").read_text() == "1\n"
    assert [v.number for v in tk.recipe.versions(folder)] == [1]
    events = tmp_path / "new.parquet"
    days[1].to_parquet(events)
    assert main(["update", str(folder), str(events)]) == 3
    assert (folder / "latest").read_text() == "1\n"
    assert main(["update", str(folder), str(events), "--force"]) == 0
    assert (folder / "latest").read_text() == "2\n"


def test_schema_mismatches_and_an_empty_update_are_clear_errors(saved, days):
    recipe = tk.load(saved)
    with pytest.raises(ValueError, match="item_id"):
        recipe.update(days[1].drop(columns=["item_id"]))
    wrong = days[1].assign(user_id=np.arange(len(days[1])))
    with pytest.raises(TypeError, match=r"new_events\['user_id'\].*astype"):
        recipe.update(wrong)
    integers = days[1].assign(item_id=pd.Series(np.arange(len(days[1])), dtype=object))
    with pytest.raises(TypeError, match=r"new_events\['item_id'\].*\(integers\)"):
        recipe.update(integers)  # integers in an object column, into a model of text ids
    with pytest.raises(ValueError, match=r"new_events.*at least one"):
        recipe.update(days[1].head(0))
    late = days[1].assign(timestamp=days[0]["timestamp"].min())
    recipe.update(late, epochs=0, tolerance=1.0)
    assert recipe.update_report_.late_events == len(late)


def test_update_needs_a_fitted_recipe(days):
    with pytest.raises(NotFittedError):
        tk.Recipe().update(days[1])


def test_per_user_scores_average_to_what_evaluate_reports(saved, days):
    """The guard's per-user scores are tk.evaluate's, user by user (their mean is its)."""
    recipe = tk.load(saved)
    c, trained = recipe.columns, recipe._fitted()
    data = _update._old_data(recipe, trained.settings)
    holdout = days[1][days[1][c.user_id].isin(data.log[c.user_id])]
    recommender = RecipeRecommender(recipe.model, queries=data.queries(trained.settings),
                                    items=data.candidates(trained.settings),
                                    user_id=c.user_id, item_id=c.item_id)
    for metric in ("ndcg@10", "recall@5"):
        scores = per_user_scores(recommender, data.log, holdout, c, metric)
        assert len(scores) == holdout[c.user_id].nunique()
        name, k = metric.split("@")
        expected = tk.evaluate({"m": recommender}, holdout, train=data.log, k=int(k),
                               metrics=[name], verbose=False)
        assert scores.mean() == pytest.approx(expected["m"][metric], abs=1e-9)


def test_weights_the_guard_refuses_fall_back_to_the_serving_ones(saved, days, monkeypatch):
    """The re-chosen weights fail the guard (their model is broken); the serving weights
    on the fine-tuned towers pass: those are published, and the report says so."""
    recipe = tk.load(saved)
    serving = recipe.report_.blend
    real = _update.refresh_blend

    def refresh(*args, **kwargs):
        refreshed = real(*args, **kwargs)
        broken = dataclasses.replace(serving, popularity=serving.popularity + 1.0)

        def measure(weights):
            if weights is broken:  # scores nothing: every user gets the same random list
                return _Constant(refreshed.measure(serving))
            return refreshed.measure(weights)

        return dataclasses.replace(refreshed, options=(broken, serving), measure=measure,
                                   rechosen=True)

    monkeypatch.setattr(_update, "refresh_blend", refresh)
    recipe.update(days[1], epochs=0, tolerance=0.5)
    report = recipe.update_report_
    assert report.published and report.refused_blend is not None
    assert report.blend is serving and report.blend_users == 0
    assert "failed the guard" in str(report)
    assert report.updated_score >= report.serving_score * 0.5


class _Constant:
    """A model whose query tower embeds every user alike (ranking no one's items)."""

    def __init__(self, model):
        self.candidate_tower = model.candidate_tower
        self.query_tower = _Tower(model.query_tower)


class _Tower:
    def __init__(self, tower):
        self.tower = tower

    def embed(self, table, **kwargs):
        embeddings = self.tower.embed(table, **kwargs)
        return np.broadcast_to(-embeddings.mean(axis=0), embeddings.shape).copy()


def test_new_weights_replace_the_serving_ones_only_beyond_noise(saved, monkeypatch):
    """``_better``: the mean per-user difference must pass ``CHOICE_MARGIN`` standard
    errors (the per-user scores are given, so the answer is known)."""
    recipe = tk.load(saved)
    trained = recipe._fitted()
    data = _update._old_data(recipe, trained.settings)
    towers = _update._grown_model(trained, data, trained.settings)  # the blend's towers
    sources = _update_blend._sources(data, dataclasses.replace(trained, model=towers), None,
                                     (1.0,))
    serving = recipe.report_.blend
    chosen = dataclasses.replace(serving, popularity=serving.popularity + 1.0)
    choice = data.log.groupby(recipe.columns.user_id).tail(1)
    differences = {"noisy": np.array([0.3, -0.3, 0.3, -0.3, 0.3, -0.2]),  # mean 0.017, se 0.12
                   "clear": np.array([0.1, 0.12, 0.1, 0.08, 0.1, 0.1])}
    for name, expected in (("noisy", False), ("clear", True)):
        scored: list = []

        def scores(recommender, known, holdout, c, metric, _name=name, _scored=scored):
            _scored.append(recommender)  # the chosen weights first, then the serving ones
            return np.zeros(6) if len(_scored) % 2 == 0 else differences[_name]

        monkeypatch.setattr(_update_blend, "per_user_scores", scores)
        assert _update_blend._better(sources, choice, serving, chosen, "ndcg@10") is expected


def test_rechoose_and_warm_sweeps_reach_the_blend_from_python_and_the_cli(
        saved, days, tmp_path, monkeypatch):
    seen = []
    real = _update.refresh_blend

    def spy(*args, **kwargs):
        seen.append((kwargs["rechoose"], kwargs["warm_sweeps"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(_update, "refresh_blend", spy)
    recipe = tk.load(saved)
    recipe.update(days[1], epochs=0, tolerance=1.0, rechoose=False, warm_sweeps=2)
    assert seen == [(False, 2)] and recipe.update_report_.blend_users == 0
    with pytest.raises(ValueError, match="warm_sweeps"):
        recipe.update(days[1], warm_sweeps=-1)
    with pytest.raises(TypeError, match="rechoose"):
        recipe.update(days[1], rechoose="yes")
    folder = _copy(saved, tmp_path)
    events = tmp_path / "new.parquet"
    days[1].to_parquet(events)
    replays = []
    real_rows = _update._fine_tune_rows

    def rows_spy(*args, **kwargs):
        replays.append(args[4:6])  # replay, window
        return real_rows(*args, **kwargs)

    monkeypatch.setattr(_update, "_fine_tune_rows", rows_spy)
    assert main(["update", str(folder), str(events), "--tolerance", "1", "--keep-blend",
                 "--warm-sweeps", "3", "--replay", "0.25", "--replay-window", "0.5"]) == 0
    assert seen[-1] == (False, 3) and replays[-1] == (0.25, 0.5)
    # Without the flags, the library's defaults (not the CLI's own copies); on a fresh
    # copy (the folder's latest has learned these events: a second time is refused).
    assert main(["update", str(folder), str(events), "--force"]) == 2
    folder = _copy(saved, tmp_path / "second")
    assert main(["update", str(folder), str(events), "--force"]) == 0
    assert seen[-1] == (_update.DEFAULT_RECHOOSE, _update.DEFAULT_WARM_SWEEPS)
    assert replays[-1] == (_update.DEFAULT_REPLAY, _update.DEFAULT_REPLAY_WINDOW)
    with pytest.raises(ValueError, match="replay_window"):
        recipe.update(days[1], replay_window=0)
