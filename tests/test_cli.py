"""The `tfrs-kit` command: the demo end to end, its pieces, and clear errors."""

import argparse

import pandas as pd
import pytest

from tfrs_kit.cli import _load, _titles, main
from tfrs_kit.datasets import InteractionDataset


def test_demo_on_synthetic_data_prints_an_evaluation_and_recommendations(capsys, tmp_path):
    assert main(["demo", "--size", "3000", "--epochs", "2", "--quiet",
                 "--export", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "EVAL two-tower recall@10=" in out
    assert "Top-3 recommendations for user" in out
    assert out.count("(score ") == 3
    assert (tmp_path / "index" / "tfrs_kit_index.json").is_file()


def test_missing_data_dir_is_a_clear_error(capsys, tmp_path):
    assert main(["demo", "--dataset", "movielens-100k", "--data-dir", str(tmp_path)]) == 2
    assert "tfrs-kit: error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--dataset", "nope"], []])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: tfrs-kit" in capsys.readouterr().err


def test_load_picks_the_data_set_and_its_default_epochs():
    args = argparse.Namespace(dataset="synthetic", size=500, epochs=None, data_dir=None)
    data, epochs = _load(args)
    assert (data.name, data.num_interactions, epochs) == ("synthetic", 500, 5)
    _, epochs = _load(argparse.Namespace(**{**vars(args), "epochs": 3}))
    assert epochs == 3


def test_titles_come_from_the_first_title_column():
    items = pd.DataFrame({"movie_id": ["1", "2"], "movie_title": ["Heat", "Up"]})
    data = InteractionDataset(interactions=items, items=items, users=items[["movie_id"]],
                              user_id="movie_id", item_id="movie_id",
                              item_features=("movie_title",))
    assert _titles(data) == {"1": "Heat", "2": "Up"}
    assert _titles(InteractionDataset(interactions=items, items=items, users=items,
                                      user_id="movie_id", item_id="movie_id")) == {}


@pytest.mark.parametrize(("argv", "message"), [
    (["demo", "--epochs", "0"], "`--epochs` must be an integer >= 1. Received: --epochs=0."),
    (["demo", "--size", "2.5"], "`--size` must be an integer >= 1. Received: --size='2.5'."),
])
def test_bad_numbers_say_the_rule(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def _never_load(args):
    raise AssertionError("the data was loaded before --export was checked")


@pytest.mark.parametrize("make", ["file", "folder of other files", "path under a file"])
def test_a_bad_export_path_fails_before_any_training(make, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("tfrs_kit.cli._load", _never_load)
    if make == "file":
        export = tmp_path / "index"
        export.write_text("not a folder")
    elif make == "folder of other files":
        export = tmp_path / "thesis"
        export.mkdir()
        (export / "chapter1.txt").write_text("keep me")
    else:
        (tmp_path / "plain").write_text("")
        export = tmp_path / "plain" / "index"
    assert main(["demo", "--quiet", "--export", str(export)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfrs-kit: error: `path` must") and "Traceback" not in err
    assert str(export) in err


def test_a_malformed_data_file_is_a_message_naming_it(capsys, tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t5\t874965758\n2\t2\n")
    (folder / "u.item").write_text("1|Toy|01-Jan-1995|||" + "|".join("0" * 19) + "\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n")
    assert main(["demo", "--dataset", "movielens-100k", "--data-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "u.data, line 2" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tfrs-kit")
    for markup in ("``", ":class:", ":func:", ":meth:", ".. "):
        assert markup not in out, markup
