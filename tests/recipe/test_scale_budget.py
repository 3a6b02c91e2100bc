"""The out-of-core fit's honest budget: the final training stops mid-epoch by a clock (a
counting clock here, never the wall), plans its steps from the measured speed, keeps
the time the blend and the export need; budgets in counts never read the clock."""

import math
import os
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.recipe._fit_progress import StepBudget
from tfrs_kit.recipe._scale import _Reserve
from tfrs_kit.recipe._scale_blend import BlendInputs, _latest_counts, choice_passes


class Counting:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step=1.0):
        self.now, self.step, self.reads = 0.0, step, 0

    def __call__(self):
        self.reads += 1
        self.now += self.step
        return self.now


def _run(budget, batches, epochs=1):
    budget.model = types.SimpleNamespace(stop_training=False)
    for epoch in range(epochs):
        for batch in range(batches):
            budget.on_train_batch_end(batch)
            if budget.model.stop_training:
                return
        budget.on_epoch_end(epoch)


def test_a_budget_in_counts_never_reads_the_clock():
    def clock():
        raise AssertionError("the clock was read")

    budget = StepBudget(steps=50, end=math.inf, clock=clock, steps_per_epoch=25, warmup=2)
    _run(budget, 25, epochs=2)
    assert budget.done == budget.planned == 50
    assert budget.why() == "" and not budget.cut_by_clock


def test_the_plan_follows_the_measured_speed_and_keeps_the_reserve():
    """One second a step, 100 s to the end, 10 s reserved: after the warm-up (speed
    timed over steps 3-4) the plan holds the steps that end by t=90, and the cosine
    decay variable follows it."""
    clock = Counting()
    decay = tf.Variable(1000.0)
    budget = StepBudget(steps=1000, end=100.0, reserve=lambda: 10.0, steps_per_epoch=1000,
                        warmup=2, decay=decay, clock=clock)
    _run(budget, 1000)
    assert budget.seconds_per_step == pytest.approx(1.0)
    assert budget.done == budget.planned == 90 and float(decay.numpy()) == 90.0
    assert budget.model.stop_training and not budget.cut_by_clock
    assert "0.09 epoch(s) of 1 fit at the measured 1.0 steps/s" in budget.why()
    assert "the clock cut it" in budget.why()


def test_a_slower_run_than_planned_is_cut_by_the_clock():
    clock = Counting()
    budget = StepBudget(steps=1000, end=100.0, reserve=lambda: 10.0, steps_per_epoch=1000,
                        warmup=2, clock=clock)
    budget.model = types.SimpleNamespace(stop_training=False)
    for _ in range(4):
        budget.on_train_batch_end(0)
    assert budget.planned == 90
    clock.step = 2.0  # twice as slow from here: t=90 (less the reserve) at step 47
    while not budget.model.stop_training:
        budget.on_train_batch_end(0)
    assert budget.done == 47 and budget.cut_by_clock


def test_each_epoch_end_on_the_way_is_planned_for():
    """5 s per epoch end of 40 steps at 1 s a step: 1.125 s a step; 80 s hold 71."""
    budget = StepBudget(steps=1000, end=100.0, reserve=lambda: 10.0, boundary=lambda: 5.0,
                        steps_per_epoch=40, clock=Counting())
    budget.done, budget._mark = 10, (0, 0.0)
    budget._plan(10.0)
    assert budget.planned == 10 + int(80 / 1.125)


def test_keras_stops_mid_epoch_and_counts_one_step_per_batch(tmp_path):
    """In a real streamed fit, the budget's cut ends the epoch where it says (optimizer
    steps counted), not at the epoch's end."""
    rng = np.random.default_rng(0)
    log = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 30, 1000)],
                        "item_id": [f"i{i}" for i in rng.integers(0, 20, 1000)]})
    log.to_parquet(tmp_path / "a.parquet", index=False)
    vocabularies = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabularies, features=["item_id"], output_dim=4))
    clock = Counting()
    budget = StepBudget(steps=3 * 16, end=11.0, steps_per_epoch=16, warmup=2, clock=clock)
    history = model.fit([str(tmp_path / "a.parquet")], epochs=3, batch_size=64,
                        shuffle_buffer=256, verbose=0, callbacks=[budget])
    assert budget.done == 11  # the step that ends at t=11 (nothing reserved) is the last
    assert int(model.optimizer.iterations.numpy()) == 11
    assert len(history.epoch) == 1


def _inputs(factors):
    return BlendInputs(factors, lambda window: np.zeros((3, 1)), (1.0, 0.3, 0.1, 0.03))


def test_the_reserve_shrinks_the_weight_choice_to_its_share():
    passes = choice_passes(_inputs((np.zeros((2, 2)), np.zeros((2, 2)))))
    assert passes == 10 + 3 * 4 + 2
    reserve = _Reserve(read_seconds=1.0, users=5000, items=10_000,
                       inputs=_inputs((np.zeros((2, 2)), np.zeros((2, 2)))), budget=200.0)
    # Nothing scored yet: a prior of 5e-8 s per user and item (2.5 s), the choice on it
    assert reserve.score() == pytest.approx(2.5)
    assert reserve.choice()[1] == int(14 / (24 * 0.0005))
    assert reserve() == pytest.approx(2.5 + reserve.choice()[0] + 6.0 + 15.0)
    reserve.scores.append(5.0)  # 5000 users scored in 5 s: 1 ms a user
    seconds, users = reserve.choice()
    # the blended model's spreads: 2 x 2000 users (1e8 scores hold 10,000 users of
    # 10,000 items, 2,000 at most): 4 s; the default users (5000) would take 24 passes x
    # 5 s: over 8% of 200 s; the 12 s left of it hold 12 / (24 x 1 ms) = 500 users
    assert users == 500 and seconds == pytest.approx(24 * 500 * 0.001 + 4.0)
    assert reserve() == pytest.approx(5.0 + seconds + 21.0)
    roomy = _Reserve(read_seconds=1.0, users=5000, items=10_000, inputs=_inputs(None),
                     budget=10_000.0)
    roomy.scores.append(5.0)
    assert roomy.choice()[1] is None  # its share holds the default: left to choose
    counted = _Reserve(read_seconds=1.0, users=5000, items=10_000, inputs=_inputs(None),
                       budget=None)
    counted.scores.append(5.0)
    assert counted.choice() == (0.0, None)  # budgets in counts: the clock plays no part


def test_the_latest_window_counts_equal_a_stable_sort_by_time():
    rng = np.random.default_rng(1)
    items = rng.integers(0, 7, 500).astype(np.int32)
    times = rng.integers(0, 40, 500).astype(np.int64)  # many ties
    for window in (1.0, 0.3, 0.1, 0.03, 0.001):
        take = max(1, math.ceil(round(window * 500, 6)))
        latest = items[np.argsort(times, kind="stable")][500 - take:]
        np.testing.assert_array_equal(_latest_counts(items, times, window, 9),
                                      np.bincount(latest, minlength=9))
        np.testing.assert_array_equal(_latest_counts(items, None, window, 9),
                                      np.bincount(items[500 - take:], minlength=9))


def _two_group_shard(tmp_path, n, *, users, items, seed) -> str:
    """One Parquet shard of ``n`` events in time order: two user groups, each picking
    from its own ``items`` items."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    log = pd.DataFrame({"user_id": [f"u{u}" for u in user],
                        "item_id": [f"i{i}" for i in (user % 2) * items
                                    + rng.integers(0, items, n)],
                        "timestamp": np.arange(n, dtype=np.int64)})
    (tmp_path / "log").mkdir()
    log.to_parquet(tmp_path / "log" / "part-0.parquet", index=False)
    return str(tmp_path / "log" / "*.parquet")


def test_an_exhausted_budget_still_ends_with_a_served_model(tmp_path):
    """A wall-clock budget spent before the final training: it is cut at its first
    batch, its score skipped, and the report says so; the Recipe still serves."""
    shard = _two_group_shard(tmp_path, 1500, users=40, items=50, seed=0)
    recipe = tk.Recipe(time_budget=0.01, max_trials=1, max_epochs=2, verbose=False,
                       in_memory_rows=0, blend=False).fit(shard)
    note = recipe.report.note
    assert "stopped: the time budget ended it" in note
    assert "the clock cut it" in note or "cut by the clock" in note
    # No epoch of the final training ended: the report counts every planned one as cut.
    planned = recipe.report.chosen.epochs
    assert recipe.report.clock_cut["final_epochs_cut"] == planned >= 1
    assert f"the final training's last {planned} epoch(s)" in str(recipe.report)
    assert len(recipe.recommend(["u1"], k=3).ids[0]) == 3


def test_the_spread_measured_in_chunks_is_the_whole_matrix_std():
    from tfrs_kit.recipe._blend import _std_of_product

    rng = np.random.default_rng(2)
    queries, items = rng.normal(size=(3000, 8)), rng.normal(1.0, 2.0, size=(2000, 8))
    # 2,000 queries a chunk: two chunks
    assert _std_of_product(queries, items) == pytest.approx(np.std(queries @ items.T),
                                                            rel=1e-9)
    assert _std_of_product(queries[:0], items) == 0.0


@pytest.mark.parametrize("best", [1, 2, 3])
def test_best_weights_kept_on_disk_restore_as_in_memory(tmp_path, best):
    """The streamed final training keeps its best epoch's weights in files
    (``keep_in``), not in memory: restored, the model is the one an in-memory copy
    gives, and not the last epoch's (unless the last was the best)."""
    from tfrs_kit.recipe._training import RankingMonitor

    log = {"user_id": np.array([f"u{i % 7}" for i in range(64)]),
           "item_id": np.array([f"i{i % 5}" for i in range(64)])}
    vocabularies = tk.VocabularyBuilder().fit(log, verbose=False)
    restored = []
    for keep_in in (None, str(tmp_path / "kept")):
        tf.keras.utils.set_random_seed(0)
        model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"], output_dim=4),
                                     tk.Tower(vocabularies, features=["item_id"], output_dim=4))
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.5))
        scores = iter([0.9 if epoch == best else 0.1 for epoch in (1, 2, 3)])
        monitor = RankingMonitor(lambda scores=scores: {"ndcg@10": next(scores)}, "ndcg@10",
                                 5, math.inf, keep_in=keep_in)
        model.fit(log, epochs=3, batch_size=16, seed=0, verbose=0, callbacks=[monitor])
        last = [w.copy() for w in model.get_weights()]
        monitor.restore()
        assert monitor.best_epoch == best
        restored.append(model.get_weights())
    assert os.listdir(tmp_path / "kept")  # kept in files, one per variable
    for in_memory, on_disk in zip(*restored, strict=True):
        np.testing.assert_array_equal(on_disk, in_memory)
    changed = any(not np.array_equal(w, f) for w, f in zip(restored[1], last, strict=True))
    assert changed == (best != 3)


@pytest.mark.parametrize("time_budget", [None, 600.0])
def test_with_a_clock_the_reserve_is_planned_from_a_score_timed_before_training(
        tmp_path, monkeypatch, time_budget):
    """The time kept for what follows the final training is planned from a validation
    score timed before its first batch (a prior per user and item was 3-4 times too
    slow on a catalogue of 180,000 items); a budget in counts scores after epochs only."""
    from tfrs_kit.recipe import _scale

    shard = _two_group_shard(tmp_path, 900, users=30, items=30, seed=1)
    events = []
    scores, batch_end = _scale.validation_scores, StepBudget.on_train_batch_end
    monkeypatch.setattr(_scale, "validation_scores",
                        lambda *a, **k: events.append("score") or scores(*a, **k))
    monkeypatch.setattr(StepBudget, "on_train_batch_end",
                        lambda self, *a: events.append("batch") or batch_end(self, *a))
    tk.Recipe(time_budget=time_budget, max_trials=1, max_epochs=1, verbose=False,
              in_memory_rows=0, blend=False).fit(shard)
    assert events[0] == ("batch" if time_budget is None else "score")
    assert events.count("score") == 1 + (time_budget is not None)  # each epoch's, and that
