"""Counts for budgets make fit reproducible; a wall-clock budget's report says what it cut."""

import dataclasses

import optuna
from count_budget import MAX_TRIALS, fit, outcome
from two_group_logs import two_group_log

import tfrs_kit as tk
from tfrs_kit.recipe._trials import PerTrialSeeds, frozen_record, replay


def test_two_count_budget_fits_give_the_same_trials_choice_and_scores(count_budget_fit):
    first, _ = count_budget_fit  # its trials also written to a work directory
    second = fit()  # a fresh fit: no work directory, nothing to reuse
    assert len(first.report.trials) == MAX_TRIALS
    # Exactly equal, scores included: same trials in the same order, same choice and epochs.
    assert outcome(second) == outcome(first)
    users = first.queries()["user_id"].head(5).tolist()
    assert (second.recommend(users, k=5).ids == first.recommend(users, k=5).ids).all()


def test_the_default_budget_is_a_count_of_trials_not_seconds():
    recipe = tk.Recipe()
    assert recipe.time_budget is None and recipe.max_trials == 3


def _toy(trial):
    x = trial.suggest_float("x", -3.0, 3.0)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return -(x - 1.0) ** 2 + {"a": 0.0, "b": 0.5, "c": -0.5}[kind]


def _study(seed=0):
    study = optuna.create_study(direction="maximize",
                                sampler=PerTrialSeeds(optuna, seed, n_startup_trials=2))
    return study


def test_tpe_proposes_the_same_trials_after_a_replay_as_after_a_run():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    enqueued = [{"x": 0.0, "kind": "a"}, {"x": 2.0, "kind": "b"}]
    whole = _study()
    for params in enqueued:
        whole.enqueue_trial(params)
    whole.optimize(_toy, n_trials=8)
    # Stopped after 3 trials, started again: the 3 replayed from their records, not run.
    stopped = _study()
    for params in enqueued:
        stopped.enqueue_trial(params)
    stopped.optimize(_toy, n_trials=3)
    resumed = _study()
    for frozen in stopped.trials:
        replay(optuna, resumed, frozen_record(optuna, frozen))
    resumed.optimize(_toy, n_trials=5)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    assert len({t.params["x"] for t in whole.trials[2:]}) == 6  # TPE's own proposals
    # Another seed proposes other trials (the seed reaches the sampler).
    other = _study(seed=1)
    for params in enqueued:
        other.enqueue_trial(params)
    other.optimize(_toy, n_trials=4)
    assert [t.params for t in other.trials[2:]] != [t.params for t in whole.trials[2:4]]


def test_a_wall_clock_budget_report_says_what_the_clock_cut(counting_clock):
    with counting_clock(1.0):  # each clock reading 1 s: the budget ends in the first epoch
        recipe = tk.Recipe(time_budget=0.01, max_trials=4, max_epochs=3, blend=False,
                           verbose=False).fit(two_group_log())
    report = recipe.report
    assert len(report.trials) == 1 and report.trials[0].clock_cut == 2  # ran 1 of 3 epochs
    assert report.clock_cut == {"trials_not_run": 3, "max_trials": 4, "trials_stopped": 1,
                                "trial_epochs_cut": 2, "final_epochs_cut": 0}
    assert ("time budget: the clock cut 3 of max_trials=4 trials not run; 1 trial(s) "
            "stopped before their planned epochs (2 epoch(s) not run)") in str(report)
    again = tk.recipe.RecipeReport.from_dict(report.to_dict())
    assert again.clock_cut == report.clock_cut and again.trials == report.trials


def test_a_budget_that_cut_nothing_says_so_and_counts_say_nothing(count_budget_fit):
    counted, _ = count_budget_fit
    assert counted.report.clock_cut == {} and "time budget" not in str(counted.report)
    nothing = dataclasses.replace(counted.report, time_budget=600.0, clock_cut={
        "trials_not_run": 0, "max_trials": 3, "trials_stopped": 0, "trial_epochs_cut": 0,
        "final_epochs_cut": 0})
    assert "time budget: the clock cut nothing" in str(nothing)
