"""The update's blend: with ``rechoose=False``, the fit's weights kept and no users held
out to choose them; the factorisation warm-started from the serving model's item
factors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
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
        recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1,
                           verbose=False)
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
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, verbose=False)
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


def test_the_previous_factors_are_read_from_the_serving_blend(fitted, tmp_path):
    """The fit's tables, unweighted: the items' as the candidate side serves them, the
    users' equal to a factorisation fitted again on the same log (deterministic for a
    seed), also after a save and load; a model without them (saved before they were
    kept) gives its items' alone; none of a model without a blend or of another width."""
    model, trained, data = fitted.model, fitted._fitted(), fitted._data
    dim = trained.settings.embedding_dim
    users, items = _update_blend._kept_tables(model, dim)
    np.testing.assert_array_equal(items, model.candidate_tower.factors.numpy()[:, :-1])
    again = _blend._factor_tables(data, trained, _blend.factorise(data, trained, fitted.seed))
    np.testing.assert_allclose(users, again[0], rtol=1e-4, atol=1e-6)
    fitted.save(tmp_path / "saved")
    loaded = tk.load(tmp_path / "saved").model
    np.testing.assert_array_equal(_update_blend._kept_tables(loaded, dim)[0], users)
    (tmp_path / "saved" / "versions" / "1" / "factors.npz").write_bytes(b"damaged")
    with pytest.warns(RuntimeWarning, match="factors.npz"):
        loaded = tk.load(tmp_path / "saved").model
    assert _update_blend._kept_tables(loaded, dim) is None
    np.testing.assert_array_equal(_update_blend._served_item_factors(loaded, dim), items)
    assert _update_blend._kept_tables(model, dim + 1) is None
    assert _update_blend._served_item_factors(model, dim + 1) is None
    towers = dataclasses.replace(trained, model=model).model.candidate_tower.tower
    assert _update_blend._served_item_factors(
        type("Model", (), {"candidate_tower": towers})(), dim) is None


def _spied(monkeypatch):
    """The names of the update's factorisations, in the order they are called."""
    calls = []

    def spy(name):
        real = getattr(_update_blend, name)

        def called(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return called

    for name in ("als_tables", "partial_tables"):
        monkeypatch.setattr(_update_blend, name, spy(name))
    return calls


def test_an_update_keeps_its_factors_for_the_next_at_any_weight(fitted, days, tmp_path,
                                                               monkeypatch):
    """A serving model without factor tables (saved before they were kept) is
    factorised from random factors once; the update keeps its tables beside the model,
    so the next one goes on from them, solving the touched rows only."""
    calls = _spied(monkeypatch)
    fitted.save(tmp_path / "saved")
    recipe = tk.load(tmp_path / "saved")
    recipe._fitted().model.factor_tables_ = None
    first, second = days[1].iloc[:100], days[1].iloc[100:]
    recipe.update(first, epochs=1, tolerance=1.0, force=True)
    assert calls == ["als_tables", "als_tables"]  # from random factors, then every event
    tables = recipe.model.factor_tables_
    assert tables[0].shape[0] == recipe.model.query_tower.vocabulary.size
    calls.clear()
    recipe.update(second, epochs=1, tolerance=1.0, force=True)
    assert calls == ["partial_tables", "partial_tables"]


def test_a_partial_refresh_solves_the_touched_rows_only_and_exactly(fitted, days,
                                                                   monkeypatch):
    """Rows of users and items without new events keep their factors; the touched
    users' rows are implicit's exact (Cholesky) solve against
    the item factors they were solved against; the solves read the touched rows only."""
    from implicit.cpu.als import AlternatingLeastSquares

    trained, old = fitted._fitted(), fitted._data
    full, _ = _update._grown_data(old, days[1], trained.settings)
    grown = _update._grown_model(trained, full, trained.settings, days[1])
    base = dataclasses.replace(trained, model=grown)
    start = _update_blend._kept_tables(fitted.model, trained.settings.embedding_dim)
    touched = days[1].head(30)
    solved = []
    import implicit.cpu._als as native

    def spy(events, block, *args, **kwargs):
        solved.append(events.shape[0])
        return real(events, block, *args, **kwargs)

    real = native.least_squares_cg
    monkeypatch.setattr(native, "least_squares_cg", spy)
    # As many conjugate-gradient steps as dimensions: each solve exact, as Cholesky's.
    monkeypatch.setattr(_update_blend, "_CG_STEPS", trained.settings.embedding_dim)
    users, items = _update_blend.partial_tables(full, base, start, touched, sweeps=3)
    before = _update_blend.partial_tables(full, base, start, touched, sweeps=2)[1]
    c = fitted.columns
    vocabularies = grown.query_tower.vocabularies
    user_rows = np.unique(vocabularies[c.user_id].index(touched[c.user_id]))
    item_rows = np.unique(vocabularies[c.item_id].index(touched[c.item_id]))
    assert solved[:2] == [len(user_rows), len(item_rows)]
    others = np.setdiff1d(np.arange(len(start[0])), user_rows)
    np.testing.assert_array_equal(users[others], start[0][others])
    others = np.setdiff1d(np.arange(len(start[1])), item_rows)
    np.testing.assert_array_equal(items[others], start[1][others])
    assert not np.allclose(users[user_rows], _update_blend._rows_of(start[0], len(users))[
        user_rows])
    s, events = trained.settings, full.log
    matrix = sp.csr_matrix((np.ones(len(events), np.float32),
                            (vocabularies[c.user_id].index(events[c.user_id]),
                             vocabularies[c.item_id].index(events[c.item_id]))),
                           shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # binary, as the Recipe's factorisation
    exact = AlternatingLeastSquares(factors=s.embedding_dim, alpha=s.warm_alpha,
                                    regularization=s.warm_regularization)
    exact.item_factors = before  # the items the last sweep's users were solved against
    np.testing.assert_allclose(users[user_rows],
                               exact.recalculate_user(user_rows, matrix[user_rows]),
                               rtol=1e-3, atol=1e-4)


def test_a_fit_that_serves_no_factorisation_keeps_the_one_it_chose_with(days, monkeypatch):
    """An iALS weight of 0: the model serves no factors, yet keeps the factorisation its
    weights were chosen with (rows in its vocabularies' order), and its first update
    goes on from it instead of factorising the whole log."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_blend, "WEIGHTS", (0.0,))
        recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1,
                           verbose=False)
        recipe.fit(days[0])
    assert recipe.report_.blend.weight == 0.0
    assert not isinstance(recipe.model.candidate_tower, _blend.JoinedTower) or \
        recipe.model.candidate_tower.factors.shape[1] == 1  # the popularity's column only
    users, items = recipe.model.factor_tables_
    vocabularies = recipe.model.query_tower.vocabularies
    c = recipe.columns
    assert users.shape[0] == vocabularies[c.user_id].size
    assert items.shape[0] == vocabularies[c.item_id].size
    # The ids the factorisation saw have their rows (the unknown id's and ids only in
    # the validation slice are zero).
    assert (np.abs(users).sum(axis=1) > 0).mean() > 0.8
    assert (np.abs(items).sum(axis=1) > 0).mean() > 0.8
    calls = _spied(monkeypatch)
    recipe.update(days[1], epochs=1, tolerance=1.0, force=True)
    assert calls == ["partial_tables", "partial_tables"]
