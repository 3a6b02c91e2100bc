"""The update's blend: with ``rechoose=False``, the fit's weights kept and no users held
out to choose them; the factorisation warm-started from the serving model's item
factors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from day_logs import two_days

import tfrs_kit as tk
from tfrs_kit.recipe import _blend, _update, _update_blend

pytest.importorskip("implicit")


@pytest.fixture(scope="module")
def days():
    old, new = two_days(2, ids_only=True)
    new.loc[:4, "item_id"] = "brand-new-item"
    return old, new


@pytest.fixture(scope="module")
def fitted(days):
    """A Recipe whose blend has a factorisation (its weight forced to 1)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_blend, "WEIGHTS", (1.0,))
        recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=1, verbose=False)
        recipe.fit(days[0])
    assert recipe.report_.blend.weight == 1.0
    return recipe


def test_rechoose_off_keeps_the_weights_and_holds_out_no_choice_users(fitted, days,
                                                                     monkeypatch):
    before = fitted.report_.blend
    log = pd.concat(days, ignore_index=True)
    data = _update.Data(log=log, items=pd.DataFrame(), users=pd.DataFrame(),
                        columns=fitted.columns, max_history=5)
    choice, guard = _update._holdouts(data, len(days[0]), seed=0, rechoose=False)
    assert not choice.any() and guard.any()
    recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=1, verbose=False)
    recipe._set_state(fitted._fitted(), fitted.report_, fitted._data, None)
    recipe.columns, recipe.schema_ = fitted.columns, fitted.schema_
    recipe.update(days[1], tolerance=1.0, rechoose=False)
    report = recipe.update_report_
    assert report.blend_users == 0 and "blend kept" in str(report)
    assert (report.blend.weight, report.blend.popularity, report.blend.window) == (
        before.weight, before.popularity, before.window)
    factors = recipe.model.candidate_tower.factors.numpy()[:, :-1]
    row = recipe.model.candidate_tower.vocabulary.index(["brand-new-item"])[0]
    assert row > 0 and np.abs(factors[row]).sum() > 0  # a new item gets its factors


def _scores(tables):
    users, items = tables
    return (users @ items.T).ravel()


def test_a_warm_start_goes_on_from_the_given_item_factors(fitted):
    """One sweep from converged factors stays where they are; one sweep from random
    factors does not: the warm start is used. Rows without events are zero."""
    trained, data = fitted._fitted(), fitted._data
    cold = _update_blend.als_tables(data, trained, None, seed=0)
    warm = _update_blend.als_tables(data, trained, cold[1], seed=0, iterations=1)
    fresh = _update_blend.als_tables(data, trained, None, seed=0, iterations=1)
    near = np.corrcoef(_scores(cold), _scores(warm))[0, 1]
    far = np.corrcoef(_scores(cold), _scores(fresh))[0, 1]
    assert near > 0.98 and near > far + 0.05, (near, far)
    assert not cold[0][0].any() and not cold[1][0].any()  # the unknown id's rows
    # A grown vocabulary: the given rows first, then new rows starting at zero.
    grown = _update_blend._rows_of(cold[1][:5], 8)
    np.testing.assert_array_equal(grown[:5], cold[1][:5])
    assert not grown[5:].any()


def test_the_previous_factors_are_read_from_the_serving_blend(fitted):
    model, trained = fitted.model, fitted._fitted()
    dim = trained.settings.embedding_dim
    items = _update_blend._previous_item_factors(model, dim)
    np.testing.assert_array_equal(items, model.candidate_tower.factors.numpy()[:, :-1])
    assert _update_blend._previous_item_factors(model, dim + 1) is None
    towers = dataclasses.replace(trained, model=model).model.candidate_tower.tower
    assert _update_blend._previous_item_factors(
        type("Model", (), {"candidate_tower": towers})(), dim) is None
