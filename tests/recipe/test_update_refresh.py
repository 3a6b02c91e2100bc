"""Recipe.update refreshes the blend: popularity recounted over the newest window, the
weights and window chosen again on the update's own holdout (``rechoose=True``,
on by default; off in tests/recipe/test_update_warm.py), the iALS factors refitted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.recipe import _blend, _update, _update_blend

pytest.importorskip("implicit")

HOT = ("hot-new-item", "i3", "i7")  # what everyone takes on the new day: a new item, two old ones


@pytest.fixture(scope="module")
def days():
    """800 events, then a day of 240 events (4 by each of 60 users) of which 3 in 4 go
    to the :data:`HOT` items: the popular items change."""
    data = tk.datasets.synthetic(800, num_users=60, num_items=40, seed=1)
    old = data.interactions.sort_values("timestamp", kind="stable").reset_index(drop=True)
    old = old[["user_id", "item_id", "timestamp"]].astype({"item_id": object})
    rng = np.random.default_rng(0)
    users = np.repeat(old["user_id"].unique()[:60], 4)
    items = [HOT[i % 3] if rng.random() < 0.75 else f"i{rng.integers(0, 40)}"
             for i in range(len(users))]
    start = int(old["timestamp"].max()) + 1
    new = pd.DataFrame({"user_id": users, "item_id": pd.Series(items, dtype=object),
                        "timestamp": start + rng.permutation(len(users))})
    return old, new


@pytest.fixture(scope="module")
def refreshed(days):
    """A Recipe fitted on the old events and updated with the new day (guard off), the
    factorisation's weight forced above 0 so its factors are in the model."""
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=2, verbose=False)
    recipe.fit(days[0])
    before = recipe.report_.blend
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_blend, "WEIGHTS", (1.0,))
        # The new weights replace the serving ones however little they win by.
        patch.setattr(_update_blend, "CHOICE_MARGIN", -np.inf)
        recipe.update(days[1], tolerance=1.0)
    return recipe, before


def _candidate_factors(recipe):
    """The candidate side's factor table (iALS columns, then the popularity) and the
    item vocabulary it is read by."""
    tower = recipe.model.candidate_tower
    return tower.factors.numpy(), tower.vocabulary


def _expected_popularity(recipe, log, window, vocabulary):
    """Each vocabulary row's standardised log count over the latest ``window`` share of
    ``log``'s events, counted here."""
    settings = recipe._fitted().settings
    events = log.sort_values("timestamp", kind="stable")
    if settings.first_only:
        events = events.drop_duplicates(["user_id", "item_id"], keep="first")
    events = events.tail(max(1, math.ceil(round(window * len(events), 6))))
    counts = np.zeros(vocabulary.size)
    for item, count in events["item_id"].value_counts().items():
        counts[int(vocabulary.lookup_layer()(tf.constant([item])).numpy()[0])] = count
    table = np.log1p(counts)
    return (table - table.mean()) / table.std()


def test_popularity_is_recounted_with_the_new_events(refreshed, days):
    recipe, _ = refreshed
    report = recipe.update_report_
    factors, vocabulary = _candidate_factors(recipe)
    log = pd.concat(days, ignore_index=True)
    expected = _expected_popularity(recipe, log, report.blend.window, vocabulary)
    np.testing.assert_allclose(factors[:, -1], expected, atol=1e-5)
    # The new day's items lead: the hot new item is among the three most popular.
    rows = vocabulary.lookup_layer()(tf.constant([HOT[0]])).numpy()
    assert factors[rows[0], -1] >= np.sort(factors[:, -1])[-3]


def test_weights_are_chosen_again_on_the_updates_holdout(refreshed):
    recipe, before = refreshed
    report = recipe.update_report_
    assert report.blend_users >= _update._MIN_CHOICE_USERS
    assert report.blend is recipe.report_.blend and report.blend is not before
    assert set(report.blend.scores) == {1.0}  # chosen among the weights tried now
    assert set(report.blend.window_scores) == set(_blend.WINDOWS)
    assert "blend chosen again on" in str(report)
    # The guard's users are not the blend's: each holds its own users' latest events.
    assert report.holdout_users + report.blend_users <= 60


def test_ials_factors_cover_the_new_items(refreshed):
    recipe, _ = refreshed
    factors, vocabulary = _candidate_factors(recipe)
    assert recipe.update_report_.blend.weight == 1.0
    als = factors[:, :-1]
    assert als.shape[1] > 0
    row = vocabulary.lookup_layer()(tf.constant([HOT[0]])).numpy()[0]
    assert row > 0 and np.abs(als[row]).sum() > 0


def test_the_guard_and_the_blend_hold_out_different_users(refreshed, days, monkeypatch):
    old, _ = days
    log = pd.concat(days, ignore_index=True)
    data = _update.Data(log=log, items=pd.DataFrame(), users=pd.DataFrame(),
                        columns=refreshed[0].columns, max_history=5)
    choice, guard = _update._holdouts(data, len(old), seed=0)
    assert choice.any() and guard.any() and not (choice & guard).any()
    assert not (choice | guard)[:len(old)].any()  # only new events are held out
    for mask in (choice, guard):  # each user's latest new event, one per user
        held = log[mask]
        assert held["user_id"].is_unique
        latest = log.iloc[len(old):].sort_values("timestamp").groupby("user_id").tail(1)
        assert set(held.index) <= set(latest.index)
    users = [set(log.loc[m, "user_id"]) for m in (choice, guard)]
    assert not users[0] & users[1]


def test_too_few_users_keep_the_fits_blend(refreshed, days):
    recipe, _ = refreshed
    kept = recipe.report_.blend
    new = days[1].head(10).assign(timestamp=days[1]["timestamp"].max() + 1)
    recipe.update(new, tolerance=1.0)
    report = recipe.update_report_
    assert report.blend_users == 0 and report.blend == kept
    assert "blend kept" in str(report)

