"""Every tutorial script in ``examples/`` runs.

The quick runs share one process (``examples_runner.py``: TensorFlow is imported once),
quickstart first, so that its run is what a fresh process gives; each script still gets its
own ``__main__``, arguments and empty working directory. That process starts as soon as the
tests are collected, beside the rest of the suite. They use the built-in synthetic
data and the fewest epochs their checks allow. The MovieLens runs are marked slow, each in
its own process, and need ``../shared/data/ml-100k`` (MovieLens is never copied into the
repository).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RUNNER = Path(__file__).resolve().parent / "examples_runner.py"
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-100k"

# script -> (arguments for a quick run, text its output must contain). Only quickstart's
# check depends on training (two-tower beats popularity): the others run one epoch.
SCRIPTS = {
    "quickstart.py": (["--epochs", "3"], "reloaded:"),
    "bring_your_own_data.py": (["--epochs", "1"], "top 5 for customer="),
    "feature_towers.py": (["--size", "10000", "--epochs", "1"], "id-only (MF)"),
    "evaluation.py": (["--epochs", "1"], "best by ndcg@10:"),
    "serving.py": (["--epochs", "1"], "served by TensorFlow alone:"),
    "custom_tower.py": (["--epochs", "1"], "registered towers:"),
    "vector_tower.py": (["--epochs", "1"], "top 3 for u0 from the reloaded index:"),
    "ranking.py": (["--size", "3000", "--epochs", "1"], "cascade served by TensorFlow alone:"),
}
CSV_RUN = "bring_your_own_data.py --csv"
CSV_ARGS = ["--csv", "log.csv", "--user", "visitor", "--item", "article", "--time", "seen_at",
            "--epochs", "1", "--item-features", "section"]


def run_example(script: str, *args: str, cwd: Path, timeout: int = 300) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
    )
    assert result.returncode == 0, (
        f"{script} {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result.stdout


class Run(NamedTuple):
    script: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    def output(self) -> str:
        """The script's standard output, once it exited with status 0."""
        assert self.returncode == 0, (f"{self.script} {' '.join(self.args)} failed:\n"
                                      f"{self.stdout[-3000:]}\n{self.stderr[-5000:]}")
        return self.stdout


_THIS = sys.modules[__name__]
_STARTED: dict = {}  # the run of the selected scripts, once started


def start_in_background(items) -> None:
    """Starts the quick runs the selected tests read, in one process, quickstart first.

    conftest.py calls this once the selection is known, so that the examples use the other
    core while the tests before them run; the ``example_runs`` fixture waits for them.
    """
    wanted = {item.callspec.params.get("script", CSV_RUN) if hasattr(item, "callspec")
              else CSV_RUN for item in items
              if getattr(item, "module", None) is _THIS and "example_runs" in item.fixturenames}
    if not wanted or _STARTED:
        return
    base = Path(tempfile.mkdtemp(prefix="tfrs_kit_examples_"))
    runs = {name: (name, SCRIPTS[name][0]) for name in
            ["quickstart.py", *sorted(set(SCRIPTS) - {"quickstart.py"})] if name in wanted}
    if CSV_RUN in wanted:
        runs[CSV_RUN] = ("bring_your_own_data.py", CSV_ARGS)
    jobs = []
    for number, (name, (script, args)) in enumerate(runs.items()):
        cwd, logs = base / f"cwd{number}", base / f"logs{number}"
        cwd.mkdir()
        logs.mkdir()
        if name == CSV_RUN:
            _visitor_log().to_csv(cwd / "log.csv", index=False)
        jobs.append({"script": str(EXAMPLES / script), "args": args, "cwd": str(cwd),
                     "stdout": str(logs / "out"), "stderr": str(logs / "err")})
    (base / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    with open(base / "runner.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(RUNNER), str(base / "jobs.json"), str(base / "results.json")],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    _STARTED.update(runs=runs, jobs=jobs, process=process, base=base)
    atexit.register(_stop)


def _stop() -> None:
    process = _STARTED.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def example_runs(request) -> dict[str, Run]:
    """The quick runs the selected tests read: run name -> its Run."""
    start_in_background(request.session.items)  # unless conftest.py started them already
    runs, jobs, base = _STARTED["runs"], _STARTED["jobs"], _STARTED["base"]
    try:
        returncode = _STARTED["process"].wait(timeout=300 * len(jobs))
    finally:
        _stop()
    assert returncode == 0, (base / "runner.log").read_text()[-5000:]
    codes = json.loads((base / "results.json").read_text())
    yield {name: Run(script, args, code, Path(job["stdout"]).read_text(),
                     Path(job["stderr"]).read_text(), Path(job["cwd"]))
           for (name, (script, args)), job, code in zip(runs.items(), jobs, codes, strict=True)}
    shutil.rmtree(base, ignore_errors=True)


def metric(output: str, name: str) -> list[float]:
    """The values of one row of a printed Report (one per model column)."""
    match = re.search(rf"^{re.escape(name)}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {name} row in:\n{output}"
    return [float(value) for value in match[1].split()]


def test_every_example_is_tested():
    assert {path.name for path in EXAMPLES.glob("*.py")} == set(SCRIPTS)


@pytest.mark.process
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs(script, example_runs):
    _, expected = SCRIPTS[script]
    run = example_runs[script]
    output = run.output()
    assert expected in output, output
    assert not list(run.cwd.iterdir()), "examples must not leave files behind"
    if script == "quickstart.py":
        two_tower, popularity = metric(output, "recall@10")
        assert two_tower > popularity, output


def _visitor_log() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 3000
    visitor = rng.integers(0, 150, n)
    article = (visitor % 5) * 8 + rng.integers(0, 8, n)  # five taste groups
    log = pd.DataFrame({
        "visitor": visitor,
        "article": [f"A-{a}" for a in article],
        "seen_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.permutation(n), unit="min"),
        "section": [f"s{a % 5}" for a in article],
        "rating": rng.integers(1, 6, n),  # describes the interaction, not the article
    })
    return log.drop_duplicates(["visitor", "article"])


@pytest.mark.process
def test_bring_your_own_data_reads_a_csv_with_other_column_names(example_runs):
    output = example_runs[CSV_RUN].output()
    assert "top 5 for visitor=" in output
    assert "query_features=['visitor', 'history']" in output
    assert "candidate features: ['article', 'section']" in output  # only the named ones


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.skipif(not (MOVIELENS / "u.data").is_file(), reason="needs ../shared/data/ml-100k")
def test_quickstart_on_movielens(tmp_path):
    output = run_example("quickstart.py", "--data-dir", str(MOVIELENS), cwd=tmp_path, timeout=600)
    two_tower, popularity = metric(output, "recall@10")
    assert two_tower > popularity
    assert two_tower > 0.15  # the default recipe reaches about 0.24 (benchmarks/quality.py)
