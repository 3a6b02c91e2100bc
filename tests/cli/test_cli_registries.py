"""The `tfrs-kit` command and the registries: data sets and towers by name, plugins included."""

from __future__ import annotations

import argparse
import functools

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.cli import main
from tfrs_kit.cli._demo import load_data
from tfrs_kit.datasets._registry import _DATASETS
from tfrs_kit.towers._registry import _TOWERS


@pytest.fixture
def registered():
    """A data source "cli_clicks" and a tower "cli_tower", registered for the test only."""
    keras_objects = tf.keras.utils.get_custom_objects()
    saved = keras_objects.copy()
    with _DATASETS.isolated(), _TOWERS.isolated():

        @tk.datasets.register_dataset("cli_clicks")
        def clicks(num_users=30, timestamp=True, data_dir=None):
            """Two groups of users, each clicking its own half of 20 items."""
            rng = np.random.default_rng(0)
            users = np.repeat(np.arange(num_users), 8)
            items = (users % 2) * 10 + rng.integers(0, 10, len(users))
            events = pd.DataFrame({"user": [f"u{u}" for u in users],
                                   "item": [f"i{i}" for i in items],
                                   "t": np.arange(len(users))})
            clicks.data_dirs.append(data_dir)
            return tk.datasets.InteractionDataset(
                interactions=events, items=events[["item"]].drop_duplicates(),
                users=events[["user"]].drop_duplicates(), user_id="user", item_id="item",
                timestamp="t" if timestamp else None, name="clicks")

        clicks.data_dirs = []

        @tk.towers.register_tower("cli_tower", package="tfrs_kit_tests")
        class CliTower(tk.Tower):
            """A tower for the command line tests."""

        yield clicks
    keras_objects.clear()
    keras_objects.update(saved)


def test_datasets_and_towers_list_every_registered_name_with_its_summary(registered, capsys):
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["cli_clicks", "movielens", "synthetic"]
    assert lines[0] == "cli_clicks  Two groups of users, each clicking its own half of 20 items."
    assert main(["towers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["cli_tower", "cross", "default"]
    assert lines[2] == "default    Encodes a set of named features into one [batch, output_dim] " \
        "embedding."


def test_demo_loads_a_registered_data_set_by_name(registered, capsys, tmp_path):
    assert main(["demo", "--dataset", "cli_clicks", "--epochs", "1", "--quiet",
                 "--data-dir", str(tmp_path)]) == 0
    assert "EVAL two-tower recall@10=" in capsys.readouterr().out
    assert registered.data_dirs == [str(tmp_path)]  # --data-dir reaches the data source


def test_an_unknown_data_set_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--dataset", "movielense"])
    assert exit_info.value.code == 2
    assert ("argument --dataset: `--dataset` must be a known dataset name. Received: "
            "--dataset='movielense'. Did you mean 'movielens'? Known: 'movielens', "
            "'synthetic'.") in capsys.readouterr().err


def test_a_data_set_without_timestamps_is_a_clear_error(registered):
    tk.datasets.register_dataset("cli_untimed")(functools.partial(registered, timestamp=False))
    args = argparse.Namespace(dataset="cli_untimed", size=100, epochs=None, data_dir=None)
    with pytest.raises(ValueError, match=r"`--dataset` must name a data set with a timestamp "
                       r"column\. Received: --dataset='cli_untimed'"):
        load_data(args)


@pytest.mark.parametrize(("name", "variant"), [("movielens-100k", "100k"),
                                               ("movielens", "100k"), ("movielens-1m", "1m")])
def test_movielens_names_pick_the_variant_and_pass_the_data_dir(name, variant):
    seen = {}

    def fake_movielens(variant="100k", *, data_dir=None):
        seen.update(variant=variant, data_dir=data_dir)
        return tk.datasets.synthetic(200, seed=0)

    args = argparse.Namespace(dataset=name, size=100, epochs=None, data_dir="ml")
    with _DATASETS.isolated():
        _DATASETS._entries["movielens"] = fake_movielens  # undone with the isolation
        assert load_data(args)[1] == 10  # MovieLens' default epochs
    assert seen == {"variant": variant, "data_dir": "ml"}


def test_train_passes_the_towers_to_the_recipe(registered, capsys, tmp_path, monkeypatch):
    events = tmp_path / "events.csv"
    pd.DataFrame({"u": ["a", "b"], "i": ["x", "y"], "t": [1, 2]}).to_csv(events, index=False)
    given = {}

    def fake_recipe(**kwargs):
        given.update(kwargs)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(tk, "Recipe", fake_recipe)
    argv = ["train", str(events), "--user", "u", "--item", "i", "--time", "t", "--export",
            str(tmp_path / "model"), "--quiet", "--query-tower", "cli_tower"]
    assert main(argv) == 2
    assert (given["query_tower"], given["candidate_tower"]) == ("cli_tower", "default")
    with pytest.raises(SystemExit):
        main([*argv[:-1], "cli_towr"])
    assert ("`--query-tower` must be a known tower name. Received: --query-tower='cli_towr'. "
            "Did you mean 'cli_tower'?") in capsys.readouterr().err
