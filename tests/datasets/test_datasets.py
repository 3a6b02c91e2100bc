"""tfrs_kit.datasets: the InteractionDataset container and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_kit import datasets
from tfrs_kit.datasets import InteractionDataset, synthetic

SYNTHETIC_DTYPES = {
    "user_id": "str",
    "item_id": "str",
    "timestamp": "int64",
    "rating": "float32",
    "user_age": "int64",
    "user_segment": "str",
    "item_title": "str",
    "item_genres": "object",
    "item_year": "int64",
}


@pytest.fixture(scope="module")
def small() -> InteractionDataset:
    return synthetic(5_000, seed=7)


@pytest.fixture(scope="module")
def medium() -> InteractionDataset:
    return synthetic(40_000, seed=0)


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def _assert_same(a: InteractionDataset, b: InteractionDataset) -> None:
    for field in ("interactions", "items", "users"):
        left, right = getattr(a, field), getattr(b, field)
        pd.testing.assert_frame_equal(
            left.drop(columns="item_genres", errors="ignore"),
            right.drop(columns="item_genres", errors="ignore"),
        )
        if "item_genres" in left:
            assert [list(g) for g in left["item_genres"]] == [list(g) for g in right["item_genres"]]


def test_public_names_are_pinned():
    assert datasets.__all__ == [
        "MOVIELENS_GENRES",
        "MOVIELENS_OCCUPATIONS",
        "InteractionDataset",
        "available_datasets",
        "load_dataset",
        "movielens",
        "register_dataset",
        "synthetic",
    ]


def test_same_seed_gives_equal_data_and_another_seed_does_not():
    _assert_same(synthetic(3_000, seed=3), synthetic(3_000, seed=3))
    other = synthetic(3_000, seed=4)
    with pytest.raises(AssertionError):
        _assert_same(synthetic(3_000, seed=3), other)


def test_default_sizes_and_roles(small):
    assert (small.num_interactions, small.num_users, small.num_items) == (5_000, 250, 100)
    assert (small.user_id, small.item_id, small.timestamp) == ("user_id", "item_id", "timestamp")
    assert small.user_features == ("user_age", "user_segment")
    assert small.item_features == ("item_title", "item_genres", "item_year")
    assert small.user_columns == ("user_id", "user_age", "user_segment")
    assert small.name == "synthetic"
    assert repr(small).startswith(
        "InteractionDataset(name='synthetic', interactions=5,000, users=250, items=100"
    )


@pytest.mark.parametrize(
    ("n", "users", "items"), [(1, 1, 1), (1_000, 7, 300), (2_000, 400, 5), (40, 4, 10)]
)
def test_exact_sizes_every_user_active_and_pairs_distinct(n, users, items):
    data = synthetic(n, num_users=users, num_items=items, seed=1)
    events = data.interactions
    assert len(events) == n
    assert list(data.users["user_id"]) == [f"u{i}" for i in range(users)]
    assert list(data.items["item_id"]) == [f"i{i}" for i in range(items)]
    assert events["user_id"].nunique() == users  # everyone has at least one event
    assert set(events["item_id"]) <= set(data.items["item_id"])
    assert not events.duplicated(["user_id", "item_id"]).any()


def test_heavy_users_of_small_clusters_get_exact_counts():
    # ~400 events per user, ~30 items per cluster, no popularity draws: many users need
    # several rejection rounds and then the exact sampler.
    data = synthetic(20_000, num_users=50, num_items=1_000, popularity_share=0.0, seed=2)
    events = data.interactions
    assert len(events) == 20_000
    assert events["user_id"].nunique() == 50
    assert not events.duplicated(["user_id", "item_id"]).any()
    diffs = events.groupby("user_id", sort=False)["timestamp"].diff().dropna()
    assert (diffs > 0).all()


def test_a_full_user_item_matrix_and_no_popularity_still_sample_exactly():
    # 4 users x 10 items, all 40 pairs: forces the exact fallback sampler.
    data = synthetic(40, num_users=4, num_items=10, num_clusters=5, popularity_share=0.0)
    assert len(data.interactions.drop_duplicates(["user_id", "item_id"])) == 40


def test_dtypes_and_multivalued_convention(small):
    assert _dtypes(small.interactions) == SYNTHETIC_DTYPES
    assert _dtypes(small.items) == {c: SYNTHETIC_DTYPES[c] for c in small.item_columns}
    assert _dtypes(small.users) == {c: SYNTHETIC_DTYPES[c] for c in small.user_columns}
    for genres in small.items["item_genres"]:
        assert isinstance(genres, np.ndarray) and genres.ndim == 1
        assert 1 <= len(genres) <= 3 and len(set(genres)) == len(genres)
        assert all(isinstance(g, str) for g in genres)
    assert small.interactions["rating"].between(1, 5).all()
    assert small.users["user_age"].between(16, 80).all()


def test_interaction_rows_carry_their_item_and_user_features(small):
    events = small.interactions
    items = small.items.set_index("item_id")
    users = small.users.set_index("user_id")
    np.testing.assert_array_equal(events["item_year"], items.loc[events["item_id"], "item_year"])
    np.testing.assert_array_equal(events["item_title"], items.loc[events["item_id"], "item_title"])
    np.testing.assert_array_equal(
        events["user_segment"], users.loc[events["user_id"], "user_segment"]
    )
    first = events.iloc[0]
    assert list(first["item_genres"]) == list(items.loc[first["item_id"], "item_genres"])


def test_timestamps_strictly_increase_within_each_user(small):
    diffs = small.interactions.groupby("user_id", sort=False)["timestamp"].diff().dropna()
    assert (diffs > 0).all()
    assert small.interactions["timestamp"].min() >= 1_500_000_000


def test_popularity_is_long_tailed(medium):
    counts = medium.interactions["item_id"].value_counts().to_numpy()
    top_tenth = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_tenth > 0.35  # a uniform catalogue would give 0.10


def _top_unseen(ranked: list[str], seen: set[str], k: int = 10) -> set[str]:
    top: list[str] = []
    for item in ranked:
        if item not in seen:
            top.append(item)
            if len(top) == k:
                break
    return set(top)


def _hit_rates(data: InteractionDataset) -> tuple[float, float]:
    """Hit rate@10 on each user's last event, for the most popular unseen items and for
    the most popular unseen items of the user's segment, both counted on the earlier
    events. The segment is an observable proxy of the user's latent cluster."""
    events = data.interactions
    is_last = ~events.duplicated("user_id", keep="last")
    train, test = events[~is_last], events[is_last]
    seen = train.groupby("user_id")["item_id"].apply(set).to_dict()
    popular = list(train["item_id"].value_counts().index)
    by_segment = {
        segment: list(group["item_id"].value_counts().index)
        for segment, group in train.groupby("user_segment")
    }
    popularity_hits = taste_hits = 0
    rows = zip(test["user_id"], test["item_id"], test["user_segment"], strict=True)
    for user, item, segment in rows:
        popularity_hits += item in _top_unseen(popular, seen.get(user, set()))
        taste_hits += item in _top_unseen(by_segment.get(segment, []), seen.get(user, set()))
    return popularity_hits / len(test), taste_hits / len(test)


def test_planted_preferences_beat_popularity_clearly(medium):
    popularity, taste = _hit_rates(medium)
    assert taste > 2 * popularity, (popularity, taste)
    assert taste > 0.3


def test_popularity_share_one_plants_no_preferences():
    popularity, taste = _hit_rates(synthetic(40_000, seed=0, popularity_share=1.0))
    assert taste < 1.15 * popularity, (popularity, taste)


def test_sizes_fill_in_the_documented_defaults():
    from tfrs_kit.datasets._synthetic import _sizes

    # users n // 20 (at least 5), items n // 50 (at least 20), clusters ~sqrt(items) in [2, 50]
    assert _sizes(1_000, None, None, None) == (1_000, 50, 20, 4)
    assert _sizes(100, None, None, None) == (100, 5, 20, 4)
    assert _sizes(10_000_000, None, None, None) == (10_000_000, 500_000, 200_000, 50)
    assert _sizes(30, 3, 10, None) == (30, 3, 10, 3)
    assert _sizes(1, 1, 1, None) == (1, 1, 1, 1)  # never more clusters than items


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_interactions": 0}, ValueError, r"`num_interactions` must be an integer >= 1"),
        ({"num_interactions": 10.5}, TypeError, r"`num_interactions` must be an integer"),
        ({"num_interactions": True}, TypeError, r"must be an integer"),
        (
            {"num_users": 0},
            ValueError,
            r"`num_users` must be an integer >= 1. Received: num_users=0",
        ),
        ({"num_items": -3}, ValueError, r"`num_items` must be an integer >= 1"),
        ({"num_clusters": 0}, ValueError, r"`num_clusters` must be an integer >= 1"),
        ({"num_items": 5, "num_clusters": 6}, ValueError, r"`num_clusters` must be at most"),
        ({"seed": -1}, ValueError, r"`seed` must be an integer >= 0"),
        ({"seed": "x"}, TypeError, r"`seed` must be an integer"),
        (
            {"popularity_share": 1.5},
            ValueError,
            r"`popularity_share` must be a finite number between 0.0 and 1.0",
        ),
        ({"popularity_share": "a"}, TypeError, r"`popularity_share` must be a finite number"),
        ({"num_interactions": 10, "num_users": 11}, ValueError, r"`num_users` must be at most"),
        (
            {"num_interactions": 100, "num_users": 3, "num_items": 10},
            ValueError,
            r"`num_interactions` must be at most num_users \* num_items = 3 \* 10 = 30",
        ),
    ],
)
def test_invalid_arguments_are_named_in_the_error(kwargs, error, message):
    kwargs = {"num_interactions": 1_000, **kwargs}
    with pytest.raises(error, match=message):
        synthetic(**kwargs)


def test_interaction_dataset_checks_its_columns():
    events = pd.DataFrame({"user": ["a"], "item": ["x"]})
    items = pd.DataFrame({"item": ["x"]})
    users = pd.DataFrame({"user": ["a"]})
    with pytest.raises(ValueError, match=r"Did you mean 'item'\?"):
        InteractionDataset(events, items, users, user_id="user", item_id="itme")
    with pytest.raises(ValueError, match="genre"):
        InteractionDataset(
            events, items, users, user_id="user", item_id="item", item_features=["genre"]
        )
    with pytest.raises(TypeError, match="`items` must be a pandas DataFrame"):
        InteractionDataset(events, {"item": ["x"]}, users, user_id="user", item_id="item")
    data = InteractionDataset(
        events, items, users, user_id="user", item_id="item", user_features=[]
    )
    assert data.user_features == () and data.timestamp is None
