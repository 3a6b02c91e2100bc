"""What a plugin author's tests look like: one call per object."""

from tfrs_kit_hashing import HashingTower, tiny_clicks

from tfrs_kit.testing import check_dataset, check_tower


def test_hashing_tower_conforms():
    check_tower(HashingTower, features=["user_id", "item_id"], output_dim=8, num_buckets=64)


def test_tiny_clicks_conforms():
    check_dataset(tiny_clicks, num_users=6)
