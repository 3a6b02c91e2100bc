"""Updating a Recipe fitted out of core (files above ``in_memory_rows``): the users'
histories go on from their times, the new events after the old ones, and survive a save.

The known answer is written out here with pandas: each user's last ``max_history``
items, all their events in time order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk

# Each test here starts processes or fits out of core: the slow CI step runs them.
pytestmark = pytest.mark.slow

pytest.importorskip("pyarrow")

MAX_HISTORY = 5


def _log(n, start, seed, users=30, items=60):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, users, n)],
                         "item_id": [f"i{i}" for i in rng.integers(0, items, n)],
                         # shuffled times: the files are not in time order
                         "timestamp": rng.permutation(n).astype(np.int64) + start})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("update_scale")
    old = _log(1_500, 0, seed=0)
    for i, part in enumerate(np.array_split(np.arange(len(old)), 3)):
        old.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=1, verbose=False,
                       in_memory_rows=0, max_history=MAX_HISTORY, histories=("sequence",),
                       work_dir=folder / "work")
    recipe.fit(str(folder / "*.parquet"))
    return recipe, old, folder


def _expected_histories(log):
    ordered = log.sort_values("timestamp", kind="stable")
    return {user: list(items.to_numpy()[-MAX_HISTORY:])
            for user, items in ordered.groupby("user_id", sort=False)["item_id"]}


def _histories(recipe):
    queries = recipe.queries()
    column = recipe.columns.history
    return {user: list(history) for user, history in
            zip(queries[recipe.columns.user_id], queries[column], strict=True)}


def test_an_out_of_core_recipe_updates_with_its_users_histories_in_time_order(fitted):
    recipe, old, folder = fitted
    assert recipe.settings.history == "sequence"
    assert _histories(recipe) == _expected_histories(old)  # as fitted: the known answer
    slots = recipe._fitted().slots  # the accumulators' row means, kept before they are let go
    assert slots is not None and (slots[1][0] > 0.1).any()
    new = _log(300, 10_000, seed=1)
    new.loc[:2, "user_id"] = "u-new"
    new.loc[3:5, "item_id"] = "i-new"
    late = new.index[-10:]  # events older than the model's newest: placed by their time
    new.loc[late, "timestamp"] = np.arange(10) * 100 + 7
    recipe.update(new, tolerance=1.0)
    report = recipe.update_report_
    assert report.published and report.new_users == 1 and report.new_items == 1
    assert report.late_events == 10
    everything = pd.concat([old, new], ignore_index=True)
    assert _histories(recipe) == _expected_histories(everything)
    seen = recipe._seen()
    assert sorted(seen.itertuples(index=False)) == sorted(everything.itertuples(index=False))
    assert "i-new" in set(recipe.recommend("u-new", k=len(recipe.candidates())).ids[0])
    # Saved and loaded, then updated again: the times are kept through the save.
    recipe.save(folder / "model")
    loaded = tk.load(folder / "model")
    assert _histories(loaded) == _expected_histories(everything)
    more = _log(200, 20_000, seed=2)
    loaded.update(more, tolerance=1.0)
    assert _histories(loaded) == _expected_histories(
        pd.concat([everything, more], ignore_index=True))
