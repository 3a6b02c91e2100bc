import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tfrs_kit  # noqa: F401  (selects Keras 2 before TensorFlow loads)


@pytest.fixture
def checkerboard():
    """Two user groups that each only ever pick from their own half of the items.

    A model that learns anything must put a user's own group's items first: its
    recall@1 is exactly 1.0.
    """
    rng = np.random.default_rng(0)
    n = 4000
    users = rng.integers(0, 40, n)
    group = users % 2
    items = group * 10 + rng.integers(0, 10, n)
    return {
        "user_id": np.array([f"u{u}" for u in users], dtype=object),
        "item_id": np.array([f"i{i}" for i in items], dtype=object),
    }
