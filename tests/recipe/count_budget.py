"""One small count-budget fit, shared by the reproducibility and resume tests (and run as a
script by the resume test's killed process: ``python count_budget.py WORK_DIR``)."""

import sys

from two_group_logs import two_group_log

import tfrs_kit as tk

MAX_TRIALS = 3


def log():
    return two_group_log(num_users=30, num_items=20, per_user=6)


def fit(work_dir=None, **kwargs):
    """A Recipe with counts for budgets (trials, epochs), seeded, fitted on :func:`log`."""
    options = {"time_budget": None, "max_trials": MAX_TRIALS, "max_epochs": 2, "seed": 3,
               "blend": False, "rerank": False, "verbose": False, "work_dir": work_dir, **kwargs}
    return tk.Recipe(**options).fit(log())


def outcome(recipe):
    """What two fits must agree on: every trial (settings, state, epochs, scores), the
    chosen settings and the final model's epochs."""
    trials = [(t.settings, t.state, t.epochs, dict(t.scores)) for t in recipe.report.trials]
    return trials, recipe.settings, recipe.report.epochs


if __name__ == "__main__":
    fit(sys.argv[1])
