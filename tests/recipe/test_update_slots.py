"""The optimizer's state kept with a fitted Recipe, saved, and where an update trains on."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from day_logs import two_days

import tfrs_kit as tk
from tfrs_kit.recipe import _slots, _update
from tfrs_kit.recipe._save import _parts
from tfrs_kit.recipe._update_events import read_new_events

INITIAL = 0.1  # Adagrad's initial accumulator


@pytest.fixture(scope="module")
def days():
    """The days ``saved_first_day`` was fitted on the first of (800 and 200 events)."""
    return two_days(0)


def _item_table(recipe):
    """The item id table's position in the candidate tower's weights, and the table."""
    (_, candidate), _ = _parts(recipe.model)
    table = candidate.encoders[recipe.columns.item_id].embedding.embeddings
    return [weight is table for weight in candidate.weights].index(True), table


def test_the_fit_keeps_each_rows_accumulator_and_save_load_keeps_it(saved_first_day, tmp_path):
    recipe = tk.load(saved_first_day)
    slots = recipe._fitted().slots
    position, table = _item_table(recipe)
    means = slots[1][position]
    assert means.shape == (table.shape[0],)
    assert means[0] == pytest.approx(INITIAL)  # the unknown id's row is never trained
    # Adagrad sums each trained row's squared gradients: the more events, the larger.
    vocabulary = recipe.model.vocabularies_[recipe.columns.item_id]
    counts = np.asarray(vocabulary.counts, float)
    assert (means[1:] > INITIAL).all()
    ranks = [np.argsort(np.argsort(values)) for values in (means[1:], counts)]
    assert np.corrcoef(*ranks)[0, 1] > 0.7
    recipe.save(tmp_path / "again")
    again = tk.load(tmp_path / "again")._fitted().slots
    for mine, theirs in zip(slots, again, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)


def _fine_tuned(recipe, new, slots, epochs=2):
    """The item table before and after an update's fine-tuning from ``slots``, the known
    rows' count, and the slots after."""
    trained = recipe._fitted()
    settings = trained.settings
    old = _update._old_data(recipe, settings)
    new, _ = read_new_events(new, old, recipe.columns, settings)
    full, _ = _update._grown_data(old, new, settings)
    grown = _update._grown_model(trained, full, settings, new)
    rows, _ = _update._fine_tune_rows(full, settings, len(old.log), len(new), 0.5, seed=0)
    table = grown.candidate_tower.encoders[recipe.columns.item_id].embedding.embeddings
    before = table.numpy()
    after_slots = _update._fine_tune(grown, rows, settings, epochs, 0, slots=slots)
    known = recipe.model.vocabularies_[recipe.columns.item_id].size
    return before, table.numpy(), known, after_slots


def test_the_fine_tuning_moves_known_rows_by_their_accumulators_and_new_rows_freely(
        saved_first_day, days):
    recipe = tk.load(saved_first_day)
    new = days[1].copy()
    new.loc[new.index[:6], "item_id"] = ["new-a"] * 3 + ["new-b"] * 3
    heavy = tuple(tuple(None if means is None else np.full_like(means, 1e10)
                        for means in side) for side in recipe._fitted().slots)
    before, after, known, slots = _fine_tuned(recipe, new, heavy)
    assert after.shape[0] == known + 2
    # A step is the learning rate x gradient / sqrt(accumulator): 1e-5 of a fresh one's.
    assert np.abs(after[:known] - before[:known]).max() < 1e-4
    assert np.abs(after[known:] - before[known:]).max() > 1e-2  # new rows start fresh
    position, _ = _item_table(recipe)
    grown = slots[1][position]
    assert grown.shape == (known + 2,) and (grown[:known] >= 1e10).all()
    assert (grown[known:] > INITIAL).all() and (grown[known:] < 1e3).all()
    # Without the state (a version saved before it was kept) every row starts fresh.
    before, after, known, _ = _fine_tuned(recipe, new, None)
    assert np.abs(after[:known] - before[:known]).max() > 1e-2
    # A state of other towers (their code changed since the save): fresh, and said so.
    with pytest.warns(RuntimeWarning, match="does not match"):
        before, after, known, _ = _fine_tuned(recipe, new, (heavy[0][:-1], heavy[1]))
    assert np.abs(after[:known] - before[:known]).max() > 1e-2


def test_with_the_state_the_fine_tuning_runs_at_its_rate_without_at_the_fits(saved_first_day,
                                                                             days):
    recipe = tk.load(saved_first_day)
    new = days[1].head(10)  # and 5 replayed: one step, and Adagrad's first step is
    assert len(new) * 1.5 <= recipe._fitted().settings.batch_size  # linear in the rate
    fresh = tuple(tuple(None if means is None else np.full_like(means, INITIAL)
                        for means in side) for side in recipe._fitted().slots)
    before, after, _, _ = _fine_tuned(recipe, new, fresh, epochs=1)
    start, end, _, _ = _fine_tuned(recipe, new, None, epochs=1)
    assert np.abs(end - start).max() > 1e-3
    np.testing.assert_allclose(after - before, (end - start) * _update.FINE_TUNE_RATE,
                               atol=1e-6)


def test_an_update_trains_on_from_the_saved_state_and_saves_it_grown(saved_first_day, days,
                                                                     tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(saved_first_day, folder)
    new = days[1].copy()
    new.loc[new.index[:3], "item_id"] = "new-a"
    recipe = tk.load(folder)
    given = []
    fine_tune = _update._fine_tune

    def spy(*args, slots=None):
        given.append(slots)
        return fine_tune(*args, slots=slots)

    monkeypatch.setattr(_update, "_fine_tune", spy)
    recipe.update(new, tolerance=1.0, dir=folder)
    assert given and given[0] is not None
    saved_slots = _slots.load(saved_first_day / "versions" / "1" / "slots.npz")
    np.testing.assert_array_equal(given[0][1][0], saved_slots[1][0])
    updated = tk.load(folder)
    position, table = _item_table(updated)
    assert updated._fitted().slots[1][position].shape == (table.shape[0],)
    assert (folder / "versions" / "2" / "slots.npz").exists()


def test_a_damaged_state_file_loads_without_it_says_so_and_updates(saved_first_day, days,
                                                                  tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_first_day, folder)
    path = folder / "versions" / "1" / "slots.npz"
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a failing disk
    with pytest.warns(RuntimeWarning, match="fresh optimizer"):
        recipe = tk.load(folder)
    assert recipe._fitted().slots is None
    users = recipe.queries()[recipe.columns.user_id].head(3).tolist()
    assert recipe.recommend(users, k=5).ids.shape == (3, 5)
    recipe.update(days[1], tolerance=1.0, epochs=1)  # as from a version saved without it
    assert recipe._fitted().slots is not None
