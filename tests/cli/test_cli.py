"""The `tfrs-kit` command: the demo end to end, its pieces, and clear errors."""

import argparse

import pandas as pd
import pytest

from tfrs_kit.cli import main
from tfrs_kit.cli._demo import load_data, titles
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
    data, epochs = load_data(args)
    assert (data.name, data.num_interactions, epochs) == ("synthetic", 500, 5)
    _, epochs = load_data(argparse.Namespace(**{**vars(args), "epochs": 3}))
    assert epochs == 3


def test_titles_come_from_the_first_title_column():
    items = pd.DataFrame({"movie_id": ["1", "2"], "movie_title": ["Heat", "Up"]})
    data = InteractionDataset(interactions=items, items=items, users=items[["movie_id"]],
                              user_id="movie_id", item_id="movie_id",
                              item_features=("movie_title",))
    assert titles(data) == {"1": "Heat", "2": "Up"}
    assert titles(InteractionDataset(interactions=items, items=items, users=items,
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
    monkeypatch.setattr("tfrs_kit.cli._demo.load_data", _never_load)
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


# --- train, evaluate, recommend on files ---------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory, counting_clock):
    """A model trained by `tfrs-kit train` on Parquet shards with a CSV catalogue; its time
    budget counted by a clock that does not depend on the machine's load."""
    import tfrs_kit as tk
    from tfrs_kit import evaluation

    folder = tmp_path_factory.mktemp("cli")
    data = tk.datasets.synthetic(2400, num_users=60, num_items=40, seed=0)
    log = data.interactions[["user_id", "item_id", "timestamp"]]
    train, test = evaluation.per_user_temporal_split(log, test_fraction=0.2)
    seen = set(zip(train.user_id, train.item_id, strict=True))
    test = test[[pair not in seen for pair in zip(test.user_id, test.item_id, strict=True)]]
    (folder / "events").mkdir()
    half = len(train) // 2
    train.iloc[:half].to_parquet(folder / "events" / "part-0.parquet", index=False)
    train.iloc[half:].to_parquet(folder / "events" / "part-1.parquet", index=False)
    data.items[["item_id", "item_year"]].to_csv(folder / "items.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    argv = ["train", str(folder / "events" / "*.parquet"), "--user", "user_id", "--item",
            "item_id", "--time", "timestamp", "--item-features", "item_year", "--items",
            str(folder / "items.csv"), "--time-budget", "4", "--export", str(folder / "model"),
            "--quiet"]
    with counting_clock(0.25):
        assert main(argv) == 0
    return folder, train, test, data.items


def test_train_notes_the_columns_it_will_not_read(tmp_path):
    """A catalogue's attributes train only when --item-features names them: the columns of
    EVENTS and --items that are neither ids nor named features are listed before training."""
    import argparse

    from tfrs_kit.cli._files import unused_columns

    pd.DataFrame({"u": ["a"], "i": ["x"], "t": [1], "store": ["s1"], "age": [3]}).to_parquet(
        tmp_path / "events.parquet")
    pd.DataFrame({"i": ["x"], "genre": ["g"], "title": ["T"]}).to_csv(tmp_path / "items.csv",
                                                                      index=False)
    args = argparse.Namespace(events=str(tmp_path / "events.parquet"), user="u", item="i",
                              time="t", item_features=["genre"], user_features=["age"],
                              items=str(tmp_path / "items.csv"))
    assert unused_columns(args) == [
        "EVENTS: columns not trained on: store (name attributes with --item-features / "
        "--user-features to use them)",
        "--items: columns not trained on: title (name attributes with --item-features / "
        "--user-features to use them)"]
    assert unused_columns(args, events=False) == unused_columns(args)[1:]
    args.item_features, args.items = ["genre", "title", "store"], None
    assert unused_columns(args) == []


def test_train_exports_what_recommend_and_evaluate_read(exported):
    folder, train, _, items = exported
    assert (folder / "model" / "latest").read_text() == "1\n"  # the versioned layout
    version = folder / "model" / "versions" / "1"
    assert {"index", "manifest.json", "queries.parquet", "candidates.parquet",
            "seen.parquet"} <= {p.name for p in version.iterdir()}
    seen = pd.read_parquet(version / "seen.parquet")
    assert list(seen.columns) == ["user_id", "item_id", "timestamp"]  # update reads the time
    assert len(seen) == len(train)
    catalogue = pd.read_parquet(version / "candidates.parquet")["item_id"]
    assert set(catalogue) == set(items.item_id)  # the catalogue's items, seen or not


def _recommended(capsys, argv):
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rank\titem\tscore"
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    return [r[1] for r in rows]


def test_recommend_prints_catalogue_items_and_excludes_seen_ones(exported, capsys):
    folder, train, _, items = exported
    user = train.user_id.iloc[0]
    seen = set(train.item_id[train.user_id == user])
    model = str(folder / "model")
    top = _recommended(capsys, ["recommend", model, "--user", user, "--k", "10"])
    assert len(top) == 10 and set(top) <= set(items.item_id)
    assert seen & set(top)  # a dense synthetic log: some of the top 10 are seen ones
    unseen = _recommended(capsys, ["recommend", model, "--user", user, "--k", "10",
                                   "--exclude-seen"])
    # Fewer than 10 when the user saw all but a few items: the rest are not padded.
    assert len(unseen) == min(10, len(items) - len(seen))
    assert not seen & set(unseen) and set(unseen) <= set(items.item_id)
    # Leaving out the seen items keeps the order of the others.
    assert [i for i in top if i not in seen] == unseen[:len([i for i in top if i not in seen])]


def test_evaluate_prints_the_recall_of_the_exported_index(exported, capsys):
    import numpy as np

    import tfrs_kit as tk

    folder, train, test, _ = exported
    assert main(["evaluate", str(folder / "model"), str(folder / "test.csv"), "--quiet"]) == 0
    out = capsys.readouterr().out
    last = dict(part.split("=") for part in out.strip().splitlines()[-1].split()
                if "=" in part)
    # Reference: the exported SavedModel's own top 10, training items excluded, scored by hand.
    index = tk.load_index(folder / "model" / "versions" / "1" / "index")
    queries = pd.read_parquet(folder / "model" / "versions" / "1" / "queries.parquet")
    recalls = []
    for user, relevant in test.groupby("user_id").item_id:
        seen = train.item_id[train.user_id == user].unique().tolist()
        top = index.recommend(queries[queries.user_id == user], k=10, exclude=[seen]).ids[0]
        recalls.append(len(set(top) & set(relevant)) / min(10, relevant.nunique()))
    assert float(last["recall@10"]) == pytest.approx(np.mean(recalls), abs=1e-4)
    popularity = tk.evaluate(tk.baselines.Popularity().fit(train), test, train=train, k=10,
                             metrics=["recall"]).to_dict()["Popularity"]["recall@10"]
    assert f"popularity recall@10={popularity:.4f}" in out


def test_evaluate_with_train_events_and_progress(exported, capsys):
    folder, *_ = exported
    argv = ["evaluate", str(folder / "model"), str(folder / "test.csv"), "--train",
            str(folder / "events"), "--k", "5"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "recall@5" in captured.out and "Ranking 40 items for every test user" in captured.err
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_recommend_for_a_new_user_from_their_history(exported, capsys):
    import tfrs_kit as tk

    folder, _, _, items = exported
    history = sorted(items.item_id)[:3]
    argv = ["recommend", str(folder / "model"), "--history", *history, "--k", "5"]
    top = _recommended(capsys, argv)
    expected = tk.load(folder / "model").recommend(history=history, k=5, exclude_seen=False)
    assert top == list(expected.ids[0])
    assert not set(history) & set(_recommended(capsys, [*argv, "--exclude-seen"]))


def test_versions_and_rollback(exported, capsys, tmp_path):
    import shutil

    import tfrs_kit as tk

    folder, *_ = exported
    model = tmp_path / "model"
    shutil.copytree(folder / "model", model)
    tk.load(model).save(model)  # version 2, as a second `train --export` would write
    assert main(["versions", str(model)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "latest\tversion\tcreated\tmetrics"
    assert [line.split("\t")[:2] for line in lines[1:]] == [["", "1"], ["*", "2"]]
    assert "ndcg@10=" in lines[1]
    assert main(["rollback", str(model)]) == 0
    assert "latest is now version 1" in capsys.readouterr().out
    assert (model / "latest").read_text() == "1\n"
    assert main(["rollback", str(model), "--to", "2"]) == 0
    assert (model / "latest").read_text() == "2\n"
    assert main(["rollback", str(model), "--to", "9"]) == 2
    assert "`to` must be a complete saved version" in capsys.readouterr().err
    assert main(["versions", str(tmp_path)]) == 2
    assert "`path` must be a folder Recipe.save" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "{events}", "--user", "user", "--item", "item_id", "--time", "timestamp",
      "--export", "{tmp}/m"], "`EVENTS` must have a column 'user' (named by `--user`). "
                              "Received: columns ['item_id', 'timestamp', 'user_id']. "
                              "Did you mean --user='user_id'?"),
    (["train", "{tmp}/none/*.parquet", "--user", "u", "--item", "i", "--time", "t",
      "--export", "{tmp}/m"], "`EVENTS` must name existing files."),
    (["evaluate", "{tmp}", "{tmp}/test.csv"], "`DIR` must be a folder Recipe.save (or "
                                             "`tfrs-kit train --export DIR`) wrote"),
    (["evaluate", "{model}", "{tmp}/bad.csv"], "bad.csv', line 3: 1 fields where the header "
                                               "has 3"),
    (["recommend", "{model}", "--user", "nobody"], "`--user` must be a user id of the "
                                                   "training log. Received: --user='nobody'"),
    (["recommend", "{model}", "--user", "u1", "--k", "500"], "`k` must be"),
])
def test_bad_input_exits_2_with_the_message_and_no_traceback(argv, message, exported, capsys,
                                                             tmp_path):
    folder, *_ = exported
    (tmp_path / "bad.csv").write_text("user_id,item_id,timestamp\nu1,i1,5\nu2\n")
    values = {"events": str(folder / "events"), "tmp": str(tmp_path),
              "model": str(folder / "model")}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"tfrs-kit: error: {message}" in err or ("tfrs-kit: error: " in err and message in err)


def test_train_refuses_a_folder_of_other_files_before_reading(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("tfrs_kit.cli._files.read_log", _never_load)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.txt").write_text("keep me")
    argv = ["train", "x.parquet", "--user", "u", "--item", "i", "--time", "t", "--export",
            str(tmp_path / "thesis")]
    assert main(argv) == 2
    assert "`--export` must be new, empty, or a folder `tfrs-kit train` wrote" in \
        capsys.readouterr().err
    assert (tmp_path / "thesis" / "chapter1.txt").read_text() == "keep me"


def test_an_unexpected_error_exits_1_with_its_traceback(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("tfrs_kit.cli._saved.recommend_command", broken)
    assert main(["recommend", "somewhere", "--user", "u1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err and "unexpected error" in err


@pytest.mark.parametrize("argv", [["train", "--help"], ["evaluate", "--help"],
                                  ["recommend", "--help"], ["versions", "--help"],
                                  ["rollback", "--help"], ["update", "--help"]])
def test_file_commands_help_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tfrs-kit {argv[0]}")


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "d", "t", "--k", "0"], "`--k` must be an integer >= 1. Received: --k=0."),
    (["train", "e", "--user", "u", "--item", "i", "--time", "t", "--export", "d",
      "--time-budget", "-1"], "`--time-budget` must be a finite number > 0"),
    (["recommend", "d"], "one of the arguments --user --history is required"),
])
def test_file_commands_bad_options_exit_2_with_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
