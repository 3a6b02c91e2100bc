"""``tfrs-kit recommend DIR --explain``: a column ``why`` beside each item."""

import pytest

import tfrs_kit as tk
from tfrs_kit.cli import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain") / "model"
    data = tk.datasets.synthetic(800, num_users=30, num_items=100, seed=0)
    log = data.interactions[["user_id", "item_id", "timestamp"]]
    tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, histories=["mean"],
              verbose=False, seed=0).fit(log).save(folder)
    return folder


def _rows(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_explain_prints_the_history_and_the_shares_of_each_item(saved, capsys):
    recipe = tk.load(saved)
    user = recipe.queries()["user_id"].iloc[0]
    head, rows = _rows(capsys, ["recommend", str(saved), "--user", user, "--k", "3",
                                "--explain"])
    assert head == ["rank", "item", "score", "why"]
    served = recipe.recommend(user, k=3, exclude_seen=False, explain=True)  # as the CLI
    assert [row[1] for row in rows] == list(served.ids[0])
    for row, explanation in zip(rows, served.explanations[0], strict=True):
        history, shares = row[3].removeprefix("because of ").split("; ")
        assert history.split(", ") == [str(item) for item in explanation.history]
        assert shares == ", ".join(f"{name} {share:.0%}"
                                   for name, share in explanation.shares.items())
        assert set(explanation.shares) == {"towers", "ials", "popularity"}


def test_without_explain_there_is_no_why_column(saved, capsys):
    user = tk.load(saved).queries()["user_id"].iloc[0]
    head, rows = _rows(capsys, ["recommend", str(saved), "--user", user, "--k", "2"])
    assert head == ["rank", "item", "score"] and all(len(row) == 3 for row in rows)
