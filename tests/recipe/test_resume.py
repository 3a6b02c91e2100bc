"""A fit started again with the same work directory replays its finished trials."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from count_budget import MAX_TRIALS, fit, outcome

import tfrs_kit.recipe._search as search_module
from tfrs_kit.recipe._trials import TrialStore, trial_key

# Each test here starts processes or fits out of core: the slow CI step runs them.
pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))


def _trial_files(work_dir):
    """The finished trials' files under ``work_dir`` (one key folder)."""
    root = os.path.join(work_dir, "trials")
    folders = os.listdir(root) if os.path.isdir(root) else []
    return [os.path.join(root, f, n) for f in folders for n in os.listdir(os.path.join(root, f))
            if n.endswith(".json")]


@pytest.fixture
def counted_training(monkeypatch):
    """How many times the search trains a setting."""
    calls = []
    train = search_module.train

    def counting(*args, **kwargs):
        calls.append(args[1])
        return train(*args, **kwargs)

    monkeypatch.setattr(search_module, "train", counting)
    return calls


def test_a_fit_writes_each_finished_trial_and_a_second_trains_only_the_chosen_again(
        count_budget_fit, tmp_path, counted_training):
    whole, work_dir = count_budget_fit
    assert len(_trial_files(work_dir)) == MAX_TRIALS
    folder = tmp_path / "work"
    shutil.copytree(work_dir, folder)
    again = fit(str(folder))
    assert outcome(again) == outcome(whole)
    # Every trial replayed; the chosen one trained again (seeded) for the blend's model.
    assert counted_training == [whole.settings]
    assert len(_trial_files(folder)) == MAX_TRIALS


def test_a_fit_killed_midway_resumes_from_its_finished_trials(count_budget_fit, tmp_path,
                                                             counted_training):
    whole, _ = count_budget_fit
    work_dir = str(tmp_path / "work")
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, os.path.join(HERE, "count_budget.py"),
                                work_dir], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not _trial_files(work_dir) and time.monotonic() < deadline:
            assert process.poll() is None, "the fit ended before it was killed"
            time.sleep(0.02)
        assert process.poll() is None, "the fit ended before it was killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    written = len(_trial_files(work_dir))
    assert 1 <= written < MAX_TRIALS
    resumed = fit(work_dir)
    assert outcome(resumed) == outcome(whole)
    # Fewer trained than a fresh fit's MAX_TRIALS (one more if the chosen one was replayed).
    replayed_best = any(whole.settings == t.settings for t in whole.report.trials[:written])
    assert len(counted_training) == MAX_TRIALS - written + replayed_best


test_a_fit_killed_midway_resumes_from_its_finished_trials = pytest.mark.process(
    test_a_fit_killed_midway_resumes_from_its_finished_trials)


def test_only_the_trials_written_whole_and_in_order_are_read(tmp_path):
    store = TrialStore(tmp_path, "key")
    store.write({"number": 0, "x": 1})
    store.write({"number": 2, "x": 3})  # after a gap: not used
    with open(os.path.join(store.folder, "1.json.99.tmp"), "w") as f:
        f.write('{"number": 1')  # a write cut short, never renamed
    assert store.load() == [{"number": 0, "x": 1}]
    with open(os.path.join(store.folder, "1.json"), "w") as f:
        f.write('{"number": 1')  # unreadable: not used, nor what follows
    assert store.load() == [{"number": 0, "x": 1}]


def test_the_key_changes_with_the_rows_and_the_search_settings():
    from count_budget import log

    rows = log()
    key = trial_key({"log": rows}, {"seed": 3, "max_trials": 3})
    assert key == trial_key({"log": rows.copy()}, {"max_trials": 3, "seed": 3})
    assert key != trial_key({"log": rows.iloc[:-1]}, {"seed": 3, "max_trials": 3})
    assert key != trial_key({"log": rows.iloc[::-1]}, {"seed": 3, "max_trials": 3})
    changed = rows.assign(item_id=rows["item_id"].where(rows.index != 5, "i999"))
    assert key != trial_key({"log": changed}, {"seed": 3, "max_trials": 3})
    assert key != trial_key({"log": rows}, {"seed": 4, "max_trials": 3})


def test_a_fit_out_of_core_replays_its_trials_without_training_them(tmp_path, monkeypatch):
    from count_budget import log

    import tfrs_kit as tk

    folder = tmp_path / "log"
    folder.mkdir()
    rows = log().drop(columns="price")
    for i, part in enumerate((rows.iloc[:90], rows.iloc[90:])):
        part.to_parquet(folder / f"part-{i}.parquet", index=False)
    options = {"time_budget": None, "max_trials": 2, "max_epochs": 2, "verbose": False,
               "in_memory_rows": 0, "work_dir": tmp_path / "work"}
    first = tk.Recipe(**options).fit(str(folder / "*.parquet"))

    def refused(*args, **kwargs):
        raise AssertionError("a trial trained again")

    monkeypatch.setattr(search_module, "train", refused)  # nor the chosen one: not needed
    again = tk.Recipe(**options).fit(str(folder / "*.parquet"))
    assert again.report.trials == first.report.trials and len(first.report.trials) == 2
    assert again.settings == first.settings
