"""The guard's noise allowance: the update's last option is refused only when its drop
passes ``tolerance`` by more than ``GUARD_NOISE`` standard errors of the mean per-user
difference; re-chosen weights with a fallback get no allowance. The per-user scores are
given (known answers), so each verdict follows from arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from day_logs import two_days

import tfrs_kit as tk
from tfrs_kit.recipe import _update


@pytest.fixture(scope="module")
def days():
    return two_days(3, ids_only=True)


@pytest.fixture(scope="module")
def saved(days, tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard") / "model"
    tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, verbose=False).fit(
        days[0]).save(folder)
    return folder


def _scores(monkeypatch, hits: float):
    """The guard's per-user scores: the serving model (scored first) hits ``hits`` of
    its users (at least one), every updated model none. Returns the users' count."""
    calls: list[int] = []

    def scores(recommender, known, holdout, c, metric):
        n = holdout[c.user_id].nunique()
        calls.append(n)
        if len(calls) > 1:
            return np.zeros(n)
        return (np.arange(n) < max(1, round(hits * n))).astype(float)

    monkeypatch.setattr(_update, "per_user_scores", scores)
    return calls


def test_a_lost_hit_on_a_small_holdout_is_noise_and_the_update_is_published(
        saved, days, monkeypatch):
    """One of n users loses a hit: the mean drop 1/n is all of the serving score, but
    its standard error is 1/n too, so it passes tolerance=0.1 by 0.9/n < GUARD_NOISE/n."""
    recipe = tk.load(saved)
    calls = _scores(monkeypatch, 0.0)
    recipe.update(days[1], epochs=0, rechoose=False)
    report, n = recipe.update_report_, calls[0]
    assert n >= 5 and report.published and report.updated_score == 0.0
    assert report.serving_score == pytest.approx(1 / n)
    assert report.noise == pytest.approx(1 / n)  # std 1/sqrt(n), over sqrt(n)
    assert report.allowance == pytest.approx(_update.GUARD_NOISE / n)
    strict = _update.dataclasses.replace(report, allowance=0.0)
    assert not strict.passed  # the old rule refused it


def test_a_model_that_loses_every_hit_is_still_refused(saved, days, monkeypatch):
    """Half the users lose their hit: the drop passes the tolerance by about
    sqrt(n - 1) standard errors, far beyond the allowance."""
    recipe = tk.load(saved)
    calls = _scores(monkeypatch, 0.5)
    with pytest.raises(tk.recipe.UpdateRejected, match="standard errors") as caught:
        recipe.update(days[1], epochs=0, rechoose=False)
    report, n = caught.value.report, calls[0]
    assert n >= 8 and not report.published
    drop = report.serving_score * 0.9 - report.updated_score
    assert drop > 2 * report.allowance > 0


def test_re_chosen_weights_get_no_allowance_and_fall_back(saved, days, monkeypatch):
    """With a fallback, the re-chosen weights must stay within tolerance: the lost hit
    refuses them, and the serving weights (the last option, allowed the noise) publish."""
    recipe = tk.load(saved)
    serving = recipe.report_.blend
    real = _update.refresh_blend

    def refresh(*args, **kwargs):
        refreshed = real(*args, **kwargs)
        other = _update.dataclasses.replace(serving, popularity=serving.popularity + 1.0)
        return _update.dataclasses.replace(refreshed, options=(other, serving),
                                           rechosen=True)

    monkeypatch.setattr(_update, "refresh_blend", refresh)
    _scores(monkeypatch, 0.0)
    recipe.update(days[1], epochs=0)
    report = recipe.update_report_
    assert report.published and report.refused_blend is not None
    assert report.blend is serving and report.allowance > 0


def test_passed_follows_tolerance_and_allowance():
    """The numbers of the day the strict guard refused (synthetic, 400 users, day 4)."""
    report = _update.UpdateReport(
        events=1, new_users=0, new_items=0, late_events=0, replayed=0, epochs=1,
        holdout_users=100, metric="ndcg@10", serving_score=0.0063, updated_score=0.0050,
        tolerance=0.1, noise=0.0013)
    assert not report.passed
    assert _update.dataclasses.replace(report, allowance=1.0 * 0.0013).passed
    assert not _update.dataclasses.replace(report, allowance=0.0003).passed
