"""Splits: the P1 rule exactly, properties on random logs, input kinds and bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrs_kit.evaluation import (
    cold_start_item_split,
    cold_start_user_split,
    leave_last_one_out,
    per_user_temporal_split,
    random_split,
    temporal_split,
)

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


def random_log(seed: int, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user_id": rng.integers(0, 15, n),
        "item_id": rng.integers(0, 30, n),
        "timestamp": rng.integers(0, 20, n),  # many ties
        "rating": rng.integers(1, 6, n),
    })


def p1_reference(log: pd.DataFrame, fraction: float) -> set[int]:
    """Row labels in test, by the written P1 rule, one user at a time."""
    test = set()
    for _, rows in log.groupby("user_id"):
        rows = rows.assign(row=np.arange(len(rows))).sort_values(
            ["timestamp", "item_id"], kind="stable")
        n_test = math.ceil(round(fraction * len(rows), 9))
        test.update(rows.index[len(rows) - n_test:])
    return test


@SETTINGS
@given(seed=st.integers(0, 10_000), fraction=st.sampled_from([0.1, 0.2, 0.35, 0.5, 0.9]))
def test_per_user_temporal_split_follows_p1(seed, fraction):
    log = random_log(seed)
    train, test = per_user_temporal_split(log, test_fraction=fraction)
    assert set(test.index) == p1_reference(log, fraction)
    assert sorted([*train.index, *test.index]) == list(log.index)
    assert set(test["user_id"]) == set(log["user_id"])  # no user dropped


def test_p1_rounds_exactly():
    log = pd.DataFrame({"user_id": [7] * 35, "item_id": range(35), "timestamp": range(35)})
    _, test = per_user_temporal_split(log, test_fraction=0.2)  # 0.2 * 35 = 7.000000000000001
    assert len(test) == 7
    assert test["item_id"].tolist() == list(range(28, 35))


def test_p1_single_interaction_user_goes_to_test_and_ties_break_by_item():
    log = {"user_id": [1, 2, 2, 2], "item_id": [5, 9, 3, 4], "timestamp": [0, 1, 1, 0]}
    train, test = per_user_temporal_split(log)
    assert test["user_id"].tolist() == [1, 2]
    assert test["item_id"].tolist() == [5, 9]  # (1, 3) < (1, 9): item 9 is the latest
    assert train["item_id"].tolist() == [3, 4]


def test_last_n_and_leave_last_one_out():
    log = random_log(3)
    _, test = per_user_temporal_split(log, last_n=2)
    counts = log.groupby("user_id").size()
    assert (test.groupby("user_id").size() == np.minimum(counts, 2)).all()
    _, last = leave_last_one_out(log)
    assert (last.groupby("user_id").size() == 1).all()
    latest = log.sort_values(["timestamp", "item_id"], kind="stable").groupby("user_id").tail(1)
    assert set(last.index) == set(latest.index)


@SETTINGS
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.05, 0.95))
def test_random_split_sizes_and_seed(seed, fraction):
    log = random_log(seed, 50)
    train, test = random_split(log, test_fraction=fraction, seed=seed)
    assert len(test) == math.ceil(round(fraction * 50, 9))
    assert sorted([*train.index, *test.index]) == list(range(50))
    again_train, _ = random_split(log, test_fraction=fraction, seed=seed)
    assert train.index.tolist() == again_train.index.tolist()


def test_random_split_seeds_differ():
    log = random_log(0, 100)
    first, second = random_split(log, seed=1)[1], random_split(log, seed=2)[1]
    assert first.index.tolist() != second.index.tolist()


def test_temporal_split_puts_the_latest_last():
    log = random_log(1)
    train, test = temporal_split(log, test_fraction=0.25)
    assert train["timestamp"].max() <= test["timestamp"].min()
    assert len(test) == 50


def test_cold_start_splits_separate_users_and_items():
    log = random_log(2)
    train, test = cold_start_user_split(log, test_fraction=0.2, seed=4)
    assert not set(train["user_id"]) & set(test["user_id"])
    assert len(set(test["user_id"])) == math.ceil(0.2 * log["user_id"].nunique())
    train, test = cold_start_item_split(log, test_fraction=0.3, seed=4)
    assert not set(train["item_id"]) & set(test["item_id"])


def test_output_kind_follows_input_kind():
    log = random_log(5, 40)
    as_dict = {name: log[name].to_numpy() for name in log}
    train, test = per_user_temporal_split(as_dict)
    assert isinstance(train, dict) and isinstance(test["item_id"], np.ndarray)
    frame_train, frame_test = per_user_temporal_split(log)
    assert isinstance(frame_train, pd.DataFrame)
    assert frame_test["item_id"].tolist() == test["item_id"].tolist()


def test_dataset_input_gives_dicts():
    import tensorflow as tf

    log = random_log(6, 30)
    dataset = tf.data.Dataset.from_tensor_slices({n: log[n].to_numpy() for n in log})
    train, test = per_user_temporal_split(dataset)
    _, expected = per_user_temporal_split(log)
    assert test["item_id"].tolist() == expected["item_id"].tolist()
    assert len(train["user_id"]) + len(test["user_id"]) == 30


def test_string_ids_and_datetime_timestamps():
    log = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["b", "a", "c", "d"],
                        "timestamp": pd.to_datetime(["2020-01-02", "2020-01-01",
                                                     "2020-01-01", "2020-01-03"])})
    _, test = per_user_temporal_split(log, test_fraction=0.5)
    assert test["item_id"].tolist() == ["b", "d"]


@pytest.mark.parametrize("seed", [0, 1])
def test_string_ids_that_are_numbers_tie_break_as_numbers(seed):
    """MovieLens read with string ids splits exactly as with integer ids (the P1 rule)."""
    log = random_log(seed).assign(item_id=lambda f: f["item_id"] * 7)  # 0..203: "14" < "7"
    as_strings = log.assign(item_id=log["item_id"].astype(str))
    _, test = per_user_temporal_split(as_strings, test_fraction=0.3)
    assert set(test.index) == p1_reference(log, 0.3)
    mixed = as_strings.assign(item_id="m" + as_strings["item_id"])  # not numbers: as strings
    _, test = per_user_temporal_split(mixed, test_fraction=0.3)
    by_string = mixed.assign(item_id=mixed["item_id"].rank(method="dense").astype(int))
    assert set(test.index) == p1_reference(by_string, 0.3)


def _renamed_dataset(timestamp: str | None = "ts"):
    from tfrs_kit.datasets import InteractionDataset

    log = random_log(8).rename(columns={"user_id": "user", "item_id": "movie",
                                        "timestamp": "ts"})
    return log, InteractionDataset(
        interactions=log, items=log[["movie"]].drop_duplicates(),
        users=log[["user"]].drop_duplicates(), user_id="user", item_id="movie",
        timestamp=timestamp, name="renamed")


def test_an_interaction_dataset_is_split_by_its_column_roles():
    log, data = _renamed_dataset()
    by_name = log.rename(columns={"user": "user_id", "movie": "item_id", "ts": "timestamp"})
    train, test = per_user_temporal_split(data, test_fraction=0.3)
    assert isinstance(test, pd.DataFrame) and list(test.columns) == list(log.columns)
    assert set(test.index) == p1_reference(by_name, 0.3)
    assert sorted([*train.index, *test.index]) == list(log.index)
    _, last = leave_last_one_out(data)
    assert set(last.index) == p1_reference(by_name, 0.0001)  # ceil: one per user
    train, test = temporal_split(data, test_fraction=0.25)
    assert train["ts"].max() <= test["ts"].min() and len(test) == 50
    train, test = cold_start_user_split(data, seed=1)
    assert not set(train["user"]) & set(test["user"])
    train, test = cold_start_item_split(data, seed=1)
    assert not set(train["movie"]) & set(test["movie"])
    train, test = random_split(data, seed=1)
    assert test.index.tolist() == random_split(log, seed=1)[1].index.tolist()


def test_columns_the_caller_names_win_over_the_roles():
    log, roles = _renamed_dataset()
    log = log.assign(later=-log["ts"])  # the reverse order of the role's column
    data = type(roles)(interactions=log, items=roles.items, users=roles.users,
                       user_id="user", item_id="movie", timestamp="ts")
    _, test = temporal_split(data, test_fraction=0.25, timestamp="later")
    assert set(test.index) == set(log.sort_values("later", kind="stable").index[-50:])


def test_a_dataset_without_a_timestamp_role_asks_for_the_column():
    _, data = _renamed_dataset(timestamp=None)
    with pytest.raises(ValueError, match="`timestamp` must name a column, since the data set "
                       "'renamed' has no timestamp column"):
        per_user_temporal_split(data)
    _, test = temporal_split(data, timestamp="ts", test_fraction=0.25)
    assert len(test) == 50


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("fraction", "error"), [
    (0, ValueError), (1, ValueError), (-0.1, ValueError), (1.5, ValueError),
    (float("nan"), ValueError), (True, TypeError), ("0.2", TypeError),
])
@pytest.mark.parametrize("split", [random_split, temporal_split, per_user_temporal_split,
                                   cold_start_user_split, cold_start_item_split])
def test_fraction_outside_zero_one_is_rejected(split, fraction, error):
    with pytest.raises(error, match=r"`test_fraction` must be a finite number > 0.0 and < 1.0"):
        split(random_log(0, 10), test_fraction=fraction)


@pytest.mark.parametrize(("seed", "error"), [(-1, ValueError), (1.0, TypeError),
                                             (True, TypeError)])
@pytest.mark.parametrize("split", [random_split, cold_start_user_split, cold_start_item_split])
def test_bad_seed_is_rejected(split, seed, error):
    with pytest.raises(error, match="`seed` must be an integer >= 0"):
        split(random_log(0, 10), seed=seed)


def test_empty_side_is_rejected():
    with pytest.raises(ValueError, match="the train side is empty"):
        random_split({"user_id": [1]}, test_fraction=0.5)
    with pytest.raises(ValueError, match="the train side is empty"):
        leave_last_one_out({"user_id": [1, 2], "item_id": [1, 2], "timestamp": [1, 2]})


def test_empty_table_is_rejected():
    with pytest.raises(ValueError, match="at least one row"):
        per_user_temporal_split(pd.DataFrame({"user_id": [], "item_id": [], "timestamp": []}))
    with pytest.raises(ValueError, match="at least one row"):
        random_split(pd.DataFrame({"user_id": []}))


def test_fraction_and_last_n_are_exclusive_and_checked():
    with pytest.raises(ValueError, match="`last_n` must be None"):
        per_user_temporal_split(random_log(0), test_fraction=0.2, last_n=1)
    with pytest.raises(ValueError, match="`last_n` must be an integer >= 1"):
        per_user_temporal_split(random_log(0), last_n=0)
    with pytest.raises(TypeError, match="`last_n` must be an integer >= 1"):
        per_user_temporal_split(random_log(0), last_n=1.0)


def test_missing_column_names_the_column():
    with pytest.raises(ValueError, match="'timestamps'"):
        per_user_temporal_split(random_log(0), timestamp="timestamps")


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_wrong_column_name_suggests_the_argument_not_a_rename(as_dict):
    log = random_log(0).rename(columns={"item_id": "movie_id"})
    data = {c: log[c].to_numpy() for c in log} if as_dict else log
    with pytest.raises(ValueError, match=r"a column 'movieid' \(named by `item_id`\).*"
                       r"Did you mean item_id='movie_id'\?$"):
        per_user_temporal_split(data, item_id="movieid")
    with pytest.raises(ValueError, match=r"a column 'item_id' \(named by `item_id`\).*"
                       r"pass item_id='\.\.\.' with the name of your column"):
        per_user_temporal_split(data)  # the default column is missing: name the argument
    with pytest.raises(ValueError, match=r"Did you mean user_id='user_id'\?"):
        cold_start_user_split(data, user_id="userid")
    with pytest.raises(ValueError, match=r"Did you mean timestamp='timestamp'\?"):
        temporal_split(data, timestamp="timestmp")
