"""Recipe.update and tk.recipe.update: grown vocabularies, a warm start, the guard."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from tfrs_kit._errors import NotFittedError
from tfrs_kit.cli import main
from tfrs_kit.recipe import _update
from tfrs_kit.recipe._save import _parts
from tfrs_kit.recipe._update_blend import Refreshed

NEW_ITEMS = ("new-item-a", "new-item-b", "new-item-c")
NEW_USERS = ("new-user-a", "new-user-b")


@pytest.fixture(scope="module")
def days():
    """The first 800 events (time order) and the next 200, some by new users of new items."""
    data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=0)
    log = data.interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
    old, new = log.iloc[:800].copy(), log.iloc[800:].copy()
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
    return tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, verbose=False).fit(days[0])


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


def test_the_guard_blocks_a_broken_update_and_latest_stays(saved, days, tmp_path,
                                                           monkeypatch):
    folder = _copy(saved, tmp_path)

    def scramble(model, rows, settings, epochs, seed):
        rng = np.random.default_rng(0)
        for weight in model.weights:
            weight.assign(rng.normal(size=weight.shape).astype(weight.dtype.as_numpy_dtype))

    monkeypatch.setattr(_update, "_fine_tune", scramble)
    # Without the blend, whose factorisation would carry the scrambled towers.
    monkeypatch.setattr(_update, "refresh_blend", lambda blend, serving, fit_data, full, base,
                        *args, **kwargs: Refreshed(base.model, base.model, None, False))
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
