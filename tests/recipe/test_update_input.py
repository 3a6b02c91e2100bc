"""``Recipe.update`` and ``tk.recipe.update`` on bad input: clear errors, nothing changed,
and the serving version never lost."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from day_logs import two_days
from lock_holder import lock_held_elsewhere

import tfrs_kit as tk


@pytest.fixture(scope="module")
def days():
    """The first 800 events (time order) and the next 200."""
    return two_days(0)


@pytest.fixture(scope="module")
def saved(saved_first_day):
    """Version 1 of a Recipe fitted on the first day, never modified by the tests."""
    return saved_first_day


def _copy(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _scores(recipe):
    users = recipe.queries()[recipe.columns.user_id].to_numpy()[:5]
    return recipe.recommend(users, k=5).scores


def test_a_time_column_of_another_type_is_a_type_error(saved, days):
    recipe = tk.load(saved)
    before = _scores(recipe)
    text = days[1].assign(timestamp=days[1]["timestamp"].astype(str))
    with pytest.raises(TypeError, match=r"new_events\['timestamp'\].*\(text\).*astype"):
        recipe.update(text)
    renamed = days[1].rename(columns={"timestamp": "time"})
    with pytest.raises(ValueError, match="timestamp"):
        recipe.update(renamed)
    np.testing.assert_array_equal(_scores(recipe), before)  # nothing changed
    assert getattr(recipe, "update_report_", None) is None


def test_events_older_than_the_model_are_accepted_and_counted(saved, days):
    recipe = tk.load(saved)
    newest = days[0]["timestamp"].max()
    events = days[1].copy()
    late = np.arange(len(events)) % 4 == 0  # a quarter of them, before the model's newest
    events.loc[late, "timestamp"] = newest - 1 - np.arange(late.sum())
    recipe.update(events, tolerance=1.0)
    report = recipe.update_report_
    assert report.published and report.events == len(events)
    assert report.late_events == int(late.sum())
    assert f"{len(events)} events ({int(late.sum())} late)" in str(report)
    # They are in the log the model serves from, in time order with the rest.
    seen = recipe._seen()
    assert len(seen) == len(days[0]) + len(events)


def test_an_empty_update_is_a_clear_error_and_writes_nothing(saved, days, tmp_path):
    folder = _copy(saved, tmp_path)
    with pytest.raises(ValueError, match=r"`new_events` must have at least one row"):
        tk.recipe.update(folder, days[1].head(0))
    with pytest.raises(ValueError, match=r"`new_events` must have at least one row"):
        tk.load(folder).update(days[1].head(0), dir=folder)
    assert (folder / "latest").read_text() == "1\n"
    assert [v.number for v in tk.recipe.versions(folder)] == [1]


def test_a_folder_another_tool_wrote_is_refused_before_any_work(saved, days, tmp_path,
                                                                  monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.bin").write_text("weights")
    with pytest.raises(ValueError, match=r"`path` must be a folder Recipe\.save"):
        tk.recipe.update(other, days[1])
    with pytest.raises(ValueError, match=r"`path` must be a folder Recipe\.save"):
        tk.recipe.update(tmp_path / "missing", days[1])
    assert not (tmp_path / "missing").exists()  # not created by the lock
    recipe = tk.load(saved)
    before = _scores(recipe)

    def refused(*args, **kwargs):
        raise AssertionError("the update ran before the folder was checked")

    monkeypatch.setattr("tfrs_kit.recipe._update.update_recipe", refused)
    with pytest.raises(FileExistsError, match="another tool wrote it"):
        recipe.update(days[1], dir=other)
    with pytest.raises(FileExistsError, match="`dir` must name a folder"):
        recipe.update(days[1], dir=other / "model.bin")
    assert sorted(p.name for p in other.iterdir()) == ["model.bin"]
    np.testing.assert_array_equal(_scores(recipe), before)
    # A versions/ folder whose manifest another tool wrote: its format is named.
    forged = _copy(saved, tmp_path / "forged")
    manifest = forged / "versions" / "1" / "manifest.json"
    manifest.write_text('{"format": "someone.else", "format_version": 1}')
    with pytest.raises(ValueError, match=r"hold a tfrs_kit\.recipe manifest.*another tool"):
        tk.recipe.update(forged, days[1])
    assert (forged / "latest").read_text() == "1\n"


def test_a_second_update_in_this_process_waits_for_the_lock_and_fails_clearly(saved, days,
                                                                              tmp_path):
    folder = _copy(saved, tmp_path)
    with lock_held_elsewhere(folder), pytest.raises(TimeoutError, match="locked by another"):
        tk.recipe.update(folder, days[1], wait=0.2, tolerance=1.0)
    assert (folder / "latest").read_text() == "1\n"
    assert not list((folder / "versions").glob(".tmp-*"))


def test_an_update_of_a_datetime_model_takes_datetimes(days):
    log = days[0].assign(timestamp=pd.to_datetime(days[0]["timestamp"], unit="s"))
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, verbose=False,
                       blend=False).fit(log)
    with pytest.raises(TypeError, match=r"new_events\['timestamp'\].*datetime64"):
        recipe.update(days[1])  # integer seconds into a model of datetimes
    new = days[1].assign(timestamp=pd.to_datetime(days[1]["timestamp"], unit="s"))
    recipe.update(new, epochs=1, tolerance=1.0)
    assert recipe.update_report_.late_events == 0
