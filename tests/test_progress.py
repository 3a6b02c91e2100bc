"""Long stages show progress, small ones stay quiet, and every one can be silenced."""

import io

import numpy as np

import tfrs_kit as tk
from tfrs_kit._progress import LOG_SECONDS, Progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal: the bar is redrawn on one line."""

    def isatty(self):
        return True


def test_auto_shows_only_large_work_and_false_silences():
    quiet, loud, silenced = io.StringIO(), io.StringIO(), io.StringIO()
    for stream, total, verbose in ((quiet, 10, "auto"), (loud, 2_000_000, "auto"),
                                   (silenced, 2_000_000, False)):
        with Progress(total, description="work", verbose=verbose, stream=stream) as bar:
            bar.update(total)
    assert quiet.getvalue() == "" and silenced.getvalue() == ""
    assert "work: [" in loud.getvalue() and "100%" in loud.getvalue()
    assert loud.getvalue().endswith("\n")


def test_vocabulary_and_evaluation_progress_can_be_forced(capsys):
    log = {"user_id": np.array(["a", "b", "a"]), "item_id": np.array(["x", "y", "y"])}
    tk.VocabularyBuilder().fit(log, verbose=True)
    assert "Counting vocabularies" in capsys.readouterr().err
    tk.evaluate(tk.baselines.Popularity().fit(log), log, train=log, k=1, verbose=True)
    assert "Evaluating Popularity" in capsys.readouterr().err
    tk.VocabularyBuilder().fit(log)
    assert capsys.readouterr().err == ""


def test_index_build_progress_can_be_forced(capsys):
    log = {"user_id": np.array(["a", "b"]), "item_id": np.array(["x", "y"])}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]}, verbose=True)
    assert "Embedding with" in capsys.readouterr().err


def test_a_partial_bar_shows_the_time_left_at_the_pace_so_far(monkeypatch):
    clock = iter([100.0, 130.0, 190.0])  # start, after a quarter, at the end
    monkeypatch.setattr("tfrs_kit._progress.time.perf_counter", lambda: next(clock))
    stream = Terminal()
    with Progress(4, description="work", verbose=True, stream=stream) as bar:
        bar.update(1)
        bar.update(3)
    first, last = stream.getvalue().split("\r")[1:]
    assert "25%" in first and "ETA 90s" in first  # 30 s for a quarter: 90 s for the rest
    assert "100%" in last and "ETA" not in last


def test_batch_progress_spans_every_planned_epoch(monkeypatch):
    from tfrs_kit.recipe._fit_progress import BatchProgress

    ticks = iter(range(100))  # a second between draws: every batch redraws
    monkeypatch.setattr("tfrs_kit._progress.time.perf_counter", lambda: float(next(ticks)))
    stream = Terminal()
    bar = BatchProgress(epochs=3, steps=4, rows=10, description="fit", verbose=True)
    bar.progress.stream = stream
    for _ in range(6):  # half of the 12 planned batches
        bar.on_train_batch_end(0)
    bar.on_train_end()
    assert "50%" in stream.getvalue().split("\r")[-1] and stream.getvalue().endswith("\n")


def test_a_log_gets_a_line_every_log_seconds_and_where_the_work_stopped(monkeypatch):
    """Not a terminal (a file, a pipe): whole lines, at most one per LOG_SECONDS, the
    first at once, and at the end the line of where the work stopped."""
    now = iter([0.0, *np.arange(1.0, 121.0)])  # start, then one update a second
    monkeypatch.setattr("tfrs_kit._progress.time.perf_counter", lambda: float(next(now)))
    log = io.StringIO()
    with Progress(200, description="work", verbose=True, stream=log) as bar:
        for _ in range(119):
            bar.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    shares = [line.split("] ")[1].split("%")[0].strip() for line in lines]
    # Updates at 1, 2, ... 119 s: lines at 1, 31, 61 and 91 s, then where it stopped.
    assert shares == ["0", "16", "30", "46", "60"] and len(lines) == 120 // LOG_SECONDS + 1


def test_peak_memory_is_this_programs_not_its_parents():
    """A process started by one that held 1 GiB reports its own peak: ``ru_maxrss``
    would report the parent's 1 GiB (Linux keeps it through ``exec``)."""
    import inspect
    import subprocess
    import sys

    import pytest

    from tfrs_kit.recipe._fit_progress import peak_gib

    if not sys.platform.startswith("linux"):
        pytest.skip("the inherited peak is a Linux behaviour")
    child = f"import sys\n{inspect.getsource(peak_gib)}\nprint(peak_gib())"
    parent = ("import subprocess, sys\nimport numpy as np\n"
              "held = np.ones(2**27)  # 1 GiB, written\n"
              f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, "
              "text=True, check=True).stdout)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert 0.0 < float(out) < 0.25  # a bare interpreter: tens of MiB
