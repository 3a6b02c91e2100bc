"""What keeps an update cheap without changing what it computes: the fine-tuning's step
traced once, the guard's and the blend's small products on one BLAS thread, the measured
blend built from the choice's embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from day_logs import two_days

import tfrs_kit as tk
from tfrs_kit.recipe import _blend, _update, _update_blend
from tfrs_kit.recipe._recommender import RecipeRecommender
from tfrs_kit.recipe._report import Blend
from tfrs_kit.recipe._update_events import read_new_events

pytest.importorskip("implicit")
threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(scope="module")
def days():
    return two_days(3, ids_only=True)


@pytest.fixture(scope="module")
def fitted(days):
    return tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1,
                     verbose=False).fit(days[0])


def _update_parts(recipe, new):
    """The grown data and model of an update of ``recipe`` with ``new``, as the update
    makes them."""
    trained = recipe._fitted()
    settings = trained.settings
    old = _update._old_data(recipe, settings)
    new, _ = read_new_events(new, old, recipe.columns, settings)
    full, _ = _update._grown_data(old, new, settings)
    return trained, old, full, _update._grown_model(trained, full, settings, new)


def test_the_fine_tuning_traces_its_train_step_once(fitted, days):
    """A step that makes the optimizer's accumulators is traced twice; they are made
    before the first step."""
    trained, old, full, grown = _update_parts(fitted, days[1])
    rows, _ = _update._fine_tune_rows(full, trained.settings, len(old.log), len(days[1]),
                                      0.5, seed=0)
    _update._fine_tune(grown, rows, trained.settings, 2, seed=0)
    assert grown.train_function.experimental_get_tracing_count() == 1


def test_the_update_scores_on_one_blas_thread_and_a_large_catalogue_on_all(fitted, days,
                                                                           monkeypatch):
    threads = []
    score = RecipeRecommender.score

    def spy(self, user_ids):
        threads.append({i["num_threads"] for i in threadpoolctl.threadpool_info()
                        if i["user_api"] == "blas"})
        return score(self, user_ids)

    monkeypatch.setattr(RecipeRecommender, "score", spy)
    before = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, verbose=False)
    recipe._set_state(fitted._fitted(), fitted.report_, fitted._data, None)
    recipe.columns, recipe.schema_ = fitted.columns, fitted.schema_
    recipe.update(days[1], tolerance=1.0, force=True)
    assert threads and all(found == {1} for found in threads), threads
    # Restored afterwards; a catalogue whose products are large keeps every thread.
    assert {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()} == before
    with _update._small_products(10_000_000, 129):
        assert {i["filepath"]: i["num_threads"]
                for i in threadpoolctl.threadpool_info()} == before


@pytest.mark.parametrize("weights", [(0.5, 0.3, 0.3), (0.0, 1.0, 1.0)])
def test_the_measured_blend_from_the_choice_embeddings_scores_as_one_embedded_again(
        fitted, days, weights):
    """:func:`_update_blend._blended_from` (the choice's embeddings reused) against
    :func:`_update_blend._blended` (the towers run again), factorisation on and off."""
    trained, _, data, grown = _update_parts(fitted, days[1])
    trained = dataclasses.replace(trained, model=grown)
    tables = _update_blend.als_tables(data, trained, None, seed=0)
    queries = data.queries(trained.settings)
    sources = _update_blend._sources(data, trained, tables, _blend._windows(data), queries)
    joined = _blend.joined_recommender(sources)
    blend = Blend(weights[0], {}, popularity=weights[1], window=weights[2])
    reused = _update_blend._blended_from(joined, sources, blend)
    again = _update_blend._blended(data, trained, tables, blend, 0, queries)
    c = fitted.columns
    users = queries[c.user_id].to_numpy()
    scores = [RecipeRecommender(model, queries=queries, items=data.candidates(trained.settings),
                                user_id=c.user_id, item_id=c.item_id).score(users)
              for model in (reused, again)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-4, atol=1e-5)
    assert np.ptp(scores[0]) > 0


def test_the_fine_tuning_rows_equal_the_whole_logs_rows(fitted, days):
    """Built from the chosen rows' users' events only, each row (its history included)
    is the whole log's row of the same event."""
    trained, old, full, _ = _update_parts(fitted, days[1].head(6))
    rows, replayed = _update._fine_tune_rows(full, trained.settings, len(old.log), 6, 0.5,
                                             seed=0)
    c = fitted.columns
    everything = full.rows(trained.settings)
    assert replayed == 3 and len(rows[c.item_id]) == 6 + replayed
    assert len(set(rows[c.user_id])) < len(set(everything[c.user_id]))

    def key(table, i):
        return table[c.user_id][i], table[c.item_id][i], table[c.timestamp][i]

    position = {key(everything, i): i for i in range(len(everything[c.item_id]))}
    for i in range(len(rows[c.item_id])):
        j = position[key(rows, i)]
        for name, values in everything.items():
            np.testing.assert_array_equal(np.asarray(rows[name][i]), np.asarray(values[j]))


@pytest.mark.parametrize("window", [0.25, 1.0])
def test_the_replay_is_drawn_from_the_latest_share_of_the_older_events(fitted, days, window):
    """Every replayed event is among the latest ``window`` of the older events by time
    (counted here with pandas); asked for more, all of that share is replayed."""
    trained, old, full, _ = _update_parts(fitted, days[1].head(40))
    c = fitted.columns
    older = full.events(trained.settings)
    older = older[older.index < len(old.log)]
    size = int(np.ceil(window * len(older)))
    latest = older.sort_values(c.timestamp, kind="stable").tail(size)
    rows, replayed = _update._fine_tune_rows(full, trained.settings, len(old.log), 40, 1.0,
                                             window, seed=0)
    assert replayed == 40
    picked = set(zip(*(rows[k] for k in c.ids()), strict=True))
    new = set(zip(*(days[1].head(40)[k] for k in c.ids()), strict=True))
    assert len(picked - new) == replayed
    assert picked - new <= set(zip(*(latest[k] for k in c.ids()), strict=True))
    _, replayed = _update._fine_tune_rows(full, trained.settings, len(old.log), 40,
                                          len(older), window, seed=0)
    assert replayed == size
