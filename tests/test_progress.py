"""Long stages show progress, small ones stay quiet, and every one can be silenced."""

import io

import numpy as np

import tfrs_kit as tk
from tfrs_kit._progress import Progress


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
