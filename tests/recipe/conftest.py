"""Fixtures shared by the Recipe's tests."""

import pytest
from count_budget import fit


@pytest.fixture(scope="session")
def count_budget_fit(tmp_path_factory):
    """The shared count-budget fit, uninterrupted, its trials kept in a work directory:
    ``(recipe, work_dir)``."""
    work_dir = tmp_path_factory.mktemp("count_budget")
    return fit(str(work_dir)), work_dir
