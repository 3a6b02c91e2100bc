"""Two processes updating one folder: the second waits for the first (or fails clearly
when told not to wait), and the first killed with SIGKILL while it saves leaves the
serving version loadable; the second then publishes the next version."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from day_logs import two_days

import tfrs_kit as tk

# Each test here starts processes: the slow CI step runs them.
pytestmark = pytest.mark.slow

# The first updater: it writes its version, signals, and stalls before the version is
# renamed into place (killed there, as by an out-of-memory kill during the save).
_STALLED_UPDATE = """
import sys, time
from pathlib import Path
import pandas as pd
import tfrs_kit as tk
from tfrs_kit.recipe import _save

folder, events, signal = sys.argv[1:4]
write = _save._write_version
def stalled(*args, **kwargs):
    write(*args, **kwargs)
    Path(signal).write_text("written")
    time.sleep(600)
_save._write_version = stalled
tk.recipe.update(folder, pd.read_parquet(events), tolerance=1.0)
"""


@pytest.fixture(scope="module")
def days():
    return two_days(0)


def _wait_for(path, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the first updater ended: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("the first updater never reached its save")
        time.sleep(0.2)


@pytest.mark.process
def test_two_updates_at_once_one_waits_and_a_kill_loses_nothing(days, tmp_path):
    folder = tmp_path / "model"
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, verbose=False)
    recipe.fit(days[0]).save(folder)
    users = recipe.queries()[recipe.columns.user_id].to_numpy()[:5]
    serving = recipe.recommend(users, k=5).ids
    events, signal = tmp_path / "events.parquet", tmp_path / "written"
    days[1].to_parquet(events)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([sys.executable, "-c", _STALLED_UPDATE, str(folder),
                              str(events), str(signal)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(signal, first)
        # The first holds the folder: a second that will not wait fails clearly ...
        with pytest.raises(TimeoutError, match="locked by another process"):
            tk.recipe.update(folder, days[1], wait=0.2, tolerance=1.0)
        # ... and one that waits is still waiting while the first runs.
        result = {}

        def second():
            try:
                result["report"] = tk.recipe.update(folder, days[1], wait=300, tolerance=1.0)
            except Exception as error:  # reported by the assertion below
                result["error"] = error

        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive() and not result
        # The serving version is untouched while the first has written its files.
        assert (folder / "latest").read_text() == "1\n"
        assert [v.number for v in tk.recipe.versions(folder)] == [1]
        np.testing.assert_array_equal(tk.load(folder).recommend(users, k=5).ids, serving)
        first.kill()  # SIGKILL during the save: no cleanup runs, the kernel frees the lock
        first.wait(30)
        waiting.join(300)
        assert not waiting.is_alive() and "error" not in result, result
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
        first.stderr.close()
    assert result["report"].published and result["report"].version == 2
    assert (folder / "latest").read_text() == "2\n"
    assert [v.number for v in tk.recipe.versions(folder)] == [1, 2]
    assert not list((folder / "versions").glob(".tmp-*"))  # the killed one's, removed
    assert tk.load(folder).recommend(users, k=5).ids.shape == (5, 5)
    np.testing.assert_array_equal(tk.load(folder, version=1).recommend(users, k=5).ids,
                                  serving)
