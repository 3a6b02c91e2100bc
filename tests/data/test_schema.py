"""tk.Schema: column roles named once, carried by the data, read by every entry point."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk
from tfrs_kit import evaluation
from tfrs_kit.baselines import EASE, Popularity, tune
from tfrs_kit.datasets import InteractionDataset

SCHEMA = tk.Schema(user_id="person", item_id="movie", timestamp="t")


def _log() -> pd.DataFrame:
    """Three people; each one's latest movie (by ``t``) is known."""
    return pd.DataFrame({
        "person": ["a", "a", "a", "b", "b", "c", "c", "c"],
        "movie": ["x", "y", "z", "x", "y", "y", "z", "w"],
        "t": [1, 2, 3, 2, 1, 1, 2, 3],
    })


def _carrying(frame: pd.DataFrame, schema: tk.Schema = SCHEMA) -> pd.DataFrame:
    frame.attrs["tfrs_kit.schema"] = schema.to_dict()
    return frame


def _carried(frame: pd.DataFrame) -> tk.Schema:
    return tk.Schema.from_dict(frame.attrs["tfrs_kit.schema"])


# --- the Schema itself ------------------------------------------------------------------


def test_schema_is_public_frozen_and_keyword_only():
    assert tk.Schema is tk.data.Schema
    assert tk.Schema() == tk.Schema(user_id="user_id", item_id="item_id",
                                    timestamp="timestamp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SCHEMA.item_id = "film"  # type: ignore[misc]
    with pytest.raises(TypeError):
        tk.Schema("person")  # type: ignore[misc]
    schema = tk.Schema(item_features=["genres"])  # a list is stored as a tuple
    assert schema.item_features == ("genres",) and hash(schema) == hash(
        tk.Schema(item_features=("genres",)))


def test_replace_changes_one_field_and_checks_it():
    assert SCHEMA.replace(item_id="film") == tk.Schema(user_id="person", item_id="film",
                                                       timestamp="t")
    assert SCHEMA.replace(timestamp=None).timestamp is None
    with pytest.raises(ValueError, match=r"`replace` must be a known Schema field\. "
                                         r"Received: replace='itemid'\. Did you mean 'item_id'"):
        SCHEMA.replace(itemid="film")
    with pytest.raises(TypeError, match=r"`item_id` must be a column name \(a string\)\. "
                                        r"Received: item_id=3"):
        SCHEMA.replace(item_id=3)


@pytest.mark.parametrize(("fields", "error", "match"), [
    ({"user_id": 3}, TypeError, r"`user_id` must be a column name \(a string\)\. "
                                r"Received: user_id=3\."),
    ({"item_id": ""}, ValueError, r"`item_id` must be a non-empty column name"),
    ({"timestamp": 5}, TypeError, r"`timestamp` must be a column name"),
    ({"item_features": "genres"}, TypeError,
     r"`item_features` must be a list of column names.*Did you mean item_features=\['genres'\]"),
    ({"user_features": ["age", 2]}, TypeError, r"`user_features\[1\]` must be a column name"),
])
def test_a_wrong_field_is_an_error_naming_it(fields, error, match):
    with pytest.raises(error, match=match):
        tk.Schema(**fields)


def test_to_dict_is_json_so_parquet_keeps_the_schema(tmp_path):
    pytest.importorskip("pyarrow")
    frame = _carrying(_log())
    frame.to_parquet(tmp_path / "log.parquet")  # attrs are written as JSON
    assert _carried(pd.read_parquet(tmp_path / "log.parquet")) == SCHEMA


# --- data sets carry their schema -------------------------------------------------------


def test_a_data_set_carries_its_schema_on_every_table():
    data = tk.datasets.synthetic(500, seed=0)
    assert data.schema == tk.Schema(
        user_id="user_id", item_id="item_id", timestamp="timestamp",
        user_features=("user_age", "user_segment"),
        item_features=("item_title", "item_genres", "item_year"))
    for frame in (data.interactions, data.items, data.users):
        assert _carried(frame) == data.schema
    events = pd.DataFrame({"user": ["a"], "item": ["x"]})
    custom = InteractionDataset(interactions=events, items=events[["item"]],
                                users=events[["user"]], user_id="user", item_id="item")
    assert custom.schema == tk.Schema(user_id="user", item_id="item", timestamp=None)
    assert events.attrs == {}  # the caller's frame is left alone


# --- splits -----------------------------------------------------------------------------


SPLITS = {
    "random_split": lambda data, **kw: evaluation.random_split(data, test_fraction=0.4, **kw),
    "temporal_split": lambda data, **kw: evaluation.temporal_split(data, test_fraction=0.4,
                                                                   **kw),
    "per_user_temporal_split": lambda data, **kw: evaluation.per_user_temporal_split(
        data, last_n=1, **kw),
    "leave_last_one_out": evaluation.leave_last_one_out,
    "cold_start_user_split": lambda data, **kw: evaluation.cold_start_user_split(
        data, test_fraction=0.4, **kw),
    "cold_start_item_split": lambda data, **kw: evaluation.cold_start_item_split(
        data, test_fraction=0.4, **kw),
}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_split_of_a_frame_carrying_a_schema_returns_frames_carrying_it(split):
    train, test = split(_carrying(_log()))  # no column argument: person, movie, t
    assert _carried(train) == SCHEMA and _carried(test) == SCHEMA
    assert len(train) + len(test) == 8


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_a_split_given_schema_returns_frames_carrying_it(split):
    train, test = split(_log(), schema=SCHEMA)
    assert _carried(train) == SCHEMA and _carried(test) == SCHEMA


def test_the_split_reads_the_carried_columns():
    _, test = evaluation.leave_last_one_out(_carrying(_log()))
    assert sorted(zip(test["person"], test["movie"], strict=True)) == [
        ("a", "z"), ("b", "x"), ("c", "w")]  # each person's latest by t
    _, test = evaluation.leave_last_one_out(_log(), user_id="person", item_id="movie",
                                            timestamp="t")
    assert _carried(test) == SCHEMA  # column arguments are carried on too


def test_a_column_argument_overrides_the_carried_schema():
    log = _carrying(_log().assign(t2=[3, 2, 1, 1, 2, 3, 2, 1]))  # the reverse order
    _, test = evaluation.leave_last_one_out(log, timestamp="t2")
    assert sorted(zip(test["person"], test["movie"], strict=True)) == [
        ("a", "x"), ("b", "y"), ("c", "y")]
    assert _carried(test) == SCHEMA.replace(timestamp="t2")


def test_a_schema_carried_past_a_rename_is_an_error_that_says_so():
    """pandas keeps attrs through rename: the carried schema then names a column the
    frame lost. Every entry point says so (not "no column 'movie'") and loses nothing;
    the column argument or dropping the attrs is the fix."""
    renamed = _carrying(_log()).rename(columns={"movie": "film"})
    calls = {"split": lambda: evaluation.leave_last_one_out(renamed),
             "baseline": lambda: Popularity().fit(renamed),
             "recipe": lambda: tk.Recipe(max_trials=1).fit(renamed)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"attrs\['tfrs_kit.schema'\].*item_id='movie'"
                           r".*Pass item_id=.*attrs.pop") as raised:
            call()
        assert "user_id=" not in str(raised.value).split("Its columns")[0], name
    assert list(renamed.columns) == ["person", "film", "t"]
    _, test = evaluation.leave_last_one_out(renamed, item_id="film")
    assert sorted(test["film"]) == ["w", "x", "z"]  # each person's latest by t
    renamed.attrs.pop("tfrs_kit.schema")
    with pytest.raises(ValueError, match="must have a column 'user_id'"):
        evaluation.leave_last_one_out(renamed)  # the defaults, named as such


def test_a_split_of_a_data_set_without_time_names_the_argument():
    events = _log().drop(columns="t")
    data = InteractionDataset(interactions=events, items=events[["movie"]].drop_duplicates(),
                              users=events[["person"]].drop_duplicates(),
                              user_id="person", item_id="movie", name="no-time")
    with pytest.raises(ValueError, match=r"`timestamp` must name a column, since the data "
                                         r"set 'no-time' has no timestamp column"):
        evaluation.temporal_split(data)
    with pytest.raises(ValueError, match=r"`timestamp` must name a column, since the "
                                         r"schema has no timestamp column"):
        evaluation.temporal_split(data.interactions)  # the frame carries the same schema
    _, test = evaluation.random_split(data, test_fraction=0.5)
    assert _carried(test) == data.schema


# --- evaluate and the baselines ---------------------------------------------------------


def _renamed_split() -> tuple[dict, dict]:
    """Plain dicts (they carry nothing) with renamed columns."""
    train = {"person": ["a", "a", "b", "c", "c"], "movie": ["x", "y", "x", "x", "z"]}
    test = {"person": ["b", "c"], "movie": ["y", "y"]}
    return train, test


def test_evaluate_reads_a_fitted_baselines_schema():
    train, test = _renamed_split()
    model = Popularity().fit(train, user_id="person", item_id="movie")
    assert model.schema_ == tk.Schema(user_id="person", item_id="movie")
    report = evaluate_recall(model, test, train)  # no column argument
    # Popularity ranks x (3 users), then y and z (1 each, y first); b saw x: y is first;
    # c saw x and z: y is first. Both hit at 1.
    assert report == {"Popularity": {"recall@1": 1.0}}


def evaluate_recall(model, test, train, **kwargs):
    return tk.evaluate(model, test, train=train, k=1, metrics=["recall"], **kwargs).to_dict()


def test_baselines_and_evaluate_read_the_schema_split_frames_carry():
    train, test = evaluation.leave_last_one_out(_carrying(_log()))
    model = EASE(l2=1.0).fit(train)  # no column argument
    assert model.schema_ == SCHEMA
    assert set(model.item_ids) == set(train["movie"])
    report = tk.evaluate({"ease": model}, test, train=train, k=1, metrics=["recall"])
    assert report.models == ("ease",)


def test_a_column_argument_overrides_the_schema_in_evaluate():
    train, test = _renamed_split()
    model = Popularity().fit(train, user_id="person", item_id="movie")
    shifted = {"person": test["person"], "movie": ["q", "q"], "film": test["movie"]}
    train_film = {**train, "film": train["movie"]}
    assert evaluate_recall(model, shifted, train_film) == {"Popularity": {"recall@1": 0.0}}
    assert evaluate_recall(model, shifted, train_film, item_id="film") == {
        "Popularity": {"recall@1": 1.0}}
    assert evaluate_recall(model, shifted, train_film, schema=tk.Schema(
        user_id="person", item_id="film")) == {"Popularity": {"recall@1": 1.0}}


def test_the_datas_schema_comes_before_the_models():
    train, _ = _renamed_split()
    model = Popularity().fit(train, user_id="person", item_id="movie")
    carried = tk.Schema(user_id="person", item_id="film")
    test_frame = _carrying(pd.DataFrame({"person": ["b", "c"], "film": ["y", "y"]}), carried)
    train_frame = _carrying(pd.DataFrame({"person": train["person"], "film": train["movie"]}),
                            carried)
    assert evaluate_recall(model, test_frame, train_frame) == {"Popularity": {"recall@1": 1.0}}


def test_a_wrong_schema_field_names_the_argument():
    train, test = _renamed_split()
    model = Popularity().fit(train, user_id="person", item_id="movie")
    with pytest.raises(ValueError, match=r"`train` must have a column 'movi' \(named by "
                                         r"`item_id`\).*Did you mean item_id='movie'"):
        tk.evaluate(model, test, train=train, schema=tk.Schema(user_id="person",
                                                               item_id="movi"))
    with pytest.raises(TypeError, match=r"`schema` must be a tfrs_kit.Schema\. "
                                        r"Received: schema='movie'"):
        tk.evaluate(model, test, train=train, schema="movie")
    with pytest.raises(ValueError, match=r"`train` must have a column 'user_id' \(named by "
                                         r"`user_id`\)"):
        Popularity().fit(train)  # nothing carried, no argument: the default names
    with pytest.raises(ValueError, match=r"attrs\['tfrs_kit.schema'\].*item_id='movi'.*"
                                         r"Did you mean item_id='movie'"):
        Popularity().fit(_carrying(_log(), SCHEMA.replace(item_id="movi")))


def test_popularitys_window_reads_the_schemas_time_and_none_still_means_none():
    log = _carrying(_log())
    recent = Popularity(window=0.25).fit(log)  # the 2 latest events by t: z and w
    assert recent.schema_ == SCHEMA
    by_item = dict(zip(recent.item_ids.tolist(), recent.score(["a"])[0].tolist(),
                       strict=True))
    assert min(by_item["z"], by_item["w"]) > max(by_item["x"], by_item["y"])
    with pytest.raises(ValueError, match=r"Received timestamp=None"):
        Popularity(window=0.25).fit(log, timestamp=None)


def test_tune_reads_the_schema_and_hands_it_to_the_model():
    rng = np.random.default_rng(0)
    log = pd.DataFrame({"person": rng.integers(0, 30, 400), "movie": rng.integers(0, 20, 400),
                        "t": np.arange(400)})
    model, result = tune(EASE, _carrying(log), grid={"l2": [1.0, 10.0]}, extend_edges=False)
    assert model.schema_ == SCHEMA and result.best_params["l2"] in (1.0, 10.0)
    with pytest.raises(ValueError, match=r"`timestamp` must name a column"):
        tune(EASE, log, grid={"l2": [1.0]}, schema=SCHEMA.replace(timestamp=None))


# --- histories --------------------------------------------------------------------------


def test_history_builder_reads_the_carried_schema_and_its_arguments_win():
    log = _carrying(_log())
    builder = tk.HistoryBuilder(max_length=5)
    users = builder.for_users(log)
    assert users["person"].tolist() == ["a", "b", "c"]
    assert [h.tolist() for h in users["history"]] == [["x", "y", "z"], ["y", "x"],
                                                      ["y", "z", "w"]]
    in_rows = tk.HistoryBuilder(timestamp=None, max_length=5).for_users(log)  # row order
    assert [h.tolist() for h in in_rows["history"]][1] == ["x", "y"]
    assert builder.user_id == "user_id"  # what data that carries no schema gets
    explicit = tk.HistoryBuilder(schema=SCHEMA, max_length=5)
    assert explicit.item_id == "movie"
    assert [h.tolist() for h in explicit.for_users(_log())["history"]][2] == ["y", "z", "w"]
    with pytest.raises(ValueError, match=r"must have a column 'movi'.*item_id='movie'"):
        tk.HistoryBuilder(item_id="movi").transform(log)


# --- the Recipe -------------------------------------------------------------------------


def _taste_log(num_users: int = 24, num_items: int = 12, per_user: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [(f"u{user}", f"i{item}", t) for user in range(num_users)
            for t, item in enumerate(rng.choice(np.arange(user % 2, num_items, 2),
                                                size=per_user, replace=False))]
    return pd.DataFrame(rows, columns=["person", "movie", "t"])


def test_a_fitted_recipe_keeps_the_schema_and_evaluate_uses_it():
    train, test = evaluation.leave_last_one_out(_taste_log(), schema=SCHEMA)
    recipe = tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=1, blend=False,
                       verbose=False).fit(train)  # no column argument
    assert recipe.schema_ == SCHEMA
    assert recipe.candidates()["movie"].nunique() == 12
    plain_test = {name: test[name].to_numpy() for name in test.columns}  # carries nothing
    plain_train = {name: train[name].to_numpy() for name in train.columns}
    report = tk.evaluate(recipe, plain_test, train=plain_train, k=5, metrics=["recall"])
    assert report.models == ("Recipe",)
    assert report.metadata["num_test_users"] == 24


def test_a_recipes_arguments_override_its_schema_before_fit():
    recipe = tk.Recipe(schema=SCHEMA.replace(item_features=("genre",)), timestamp="when",
                       verbose=False)
    assert recipe.item_features == ("genre",)  # the schema's, as none were given
    assert recipe.columns.schema == SCHEMA.replace(timestamp="when", item_features=("genre",))
    assert tk.Recipe(item_id="movie").columns.item_id == "movie"
    with pytest.raises(TypeError, match=r"`schema` must be a tfrs_kit.Schema"):
        tk.Recipe(schema={"item_id": "movie"})
