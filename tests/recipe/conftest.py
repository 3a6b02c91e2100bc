"""Fixtures shared by the Recipe's tests."""

import pytest
from count_budget import fit
from day_logs import two_days

import tfrs_kit as tk


@pytest.fixture(scope="session")
def count_budget_fit(tmp_path_factory):
    """The shared count-budget fit, uninterrupted, its trials kept in a work directory:
    ``(recipe, work_dir)``."""
    work_dir = tmp_path_factory.mktemp("count_budget")
    return fit(str(work_dir)), work_dir


@pytest.fixture(scope="session")
def saved_first_day(tmp_path_factory):
    """Version 1 of the fastest Recipe fitted on the first day of ``two_days(0)`` (800
    events), never modified by the tests: copy it to update it."""
    folder = tmp_path_factory.mktemp("saved_first_day") / "model"
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=2, verbose=False)
    recipe.fit(two_days(0)[0]).save(folder)
    return folder
