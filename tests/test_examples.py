"""Every tutorial script in ``examples/`` runs, each in its own process.

By default the scripts use the built-in synthetic data, so each takes well under
30 seconds on two CPU cores. The MovieLens runs are marked slow and need
``../shared/data/ml-100k`` (MovieLens is never copied into the repository).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-100k"

# script -> (arguments for a quick run, text its output must contain)
SCRIPTS = {
    "quickstart.py": (["--epochs", "3"], "reloaded:"),
    "bring_your_own_data.py": (["--epochs", "3"], "top 5 for customer="),
    "feature_towers.py": (["--size", "10000", "--epochs", "3"], "id-only (MF)"),
    "evaluation.py": (["--epochs", "3"], "best by ndcg@10:"),
    "serving.py": (["--epochs", "3"], "served by TensorFlow alone:"),
    "custom_tower.py": (["--epochs", "3"], "registered towers:"),
    "vector_tower.py": (["--epochs", "2"], "top 3 for u0 from the reloaded index:"),
    "ranking.py": (["--epochs", "3"], "cascade served by TensorFlow alone:"),
}


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


def metric(output: str, name: str) -> list[float]:
    """The values of one row of a printed Report (one per model column)."""
    match = re.search(rf"^{re.escape(name)}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {name} row in:\n{output}"
    return [float(value) for value in match[1].split()]


def test_every_example_is_tested():
    assert {path.name for path in EXAMPLES.glob("*.py")} == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs(script, tmp_path):
    args, expected = SCRIPTS[script]
    output = run_example(script, *args, cwd=tmp_path)
    assert expected in output, output
    assert not list(tmp_path.iterdir()), "examples must not leave files behind"
    if script == "quickstart.py":
        two_tower, popularity = metric(output, "recall@10")
        assert two_tower > popularity, output


def test_bring_your_own_data_reads_a_csv_with_other_column_names(tmp_path):
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
    }).drop_duplicates(["visitor", "article"])
    log.to_csv(tmp_path / "log.csv", index=False)
    output = run_example("bring_your_own_data.py", "--csv", "log.csv", "--user", "visitor",
                         "--item", "article", "--time", "seen_at", "--epochs", "2",
                         "--item-features", "section", cwd=tmp_path)
    assert "top 5 for visitor=" in output
    assert "query_features=['visitor', 'history']" in output
    assert "candidate features: ['article', 'section']" in output  # only the named ones


@pytest.mark.slow
@pytest.mark.skipif(not (MOVIELENS / "u.data").is_file(), reason="needs ../shared/data/ml-100k")
def test_quickstart_on_movielens(tmp_path):
    output = run_example("quickstart.py", "--data-dir", str(MOVIELENS), cwd=tmp_path, timeout=600)
    two_tower, popularity = metric(output, "recall@10")
    assert two_tower > popularity
    assert two_tower > 0.15  # the default recipe reaches about 0.24 (benchmarks/quality.py)
