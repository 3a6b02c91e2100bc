"""Tiny indexes with known answers, served in-process (no sockets)."""

import importlib.util
import shutil

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import ITEMS

import tfrs_kit as tk
from tfrs_kit import serving

# Without the serve extra (and httpx) there is nothing to test here.
_EXTRA = ("fastapi", "httpx", "prometheus_client", "uvicorn")
collect_ignore_glob = ["test_*.py"] if any(
    importlib.util.find_spec(name) is None for name in _EXTRA) else []

USERS = ["u1", "u2", "u3", "u4"]


def _index(seed):
    """User id + history query tower over six items (untrained: seeded weights suffice)."""
    rows = {
        "user_id": np.array(USERS * 3, dtype=object),
        "item_id": np.array(ITEMS * 2, dtype=object),
    }
    history = np.empty(12, dtype=object)
    for row in range(12):
        history[row] = ITEMS[: 1 + row % 4]
    rows["history"] = history
    vocabs = tk.VocabularyBuilder().fit(rows, features={
        "user_id": "categorical", "item_id": "categorical", "history": "multi"})
    tf.keras.utils.set_random_seed(seed)
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "history"], output_dim=8),
        tk.Tower(vocabs, features=["item_id"], output_dim=8))
    return tk.IndexBuilder(k_max=5, backend="brute_force").build(model, {"item_id": ITEMS})


@pytest.fixture(scope="session")
def saved_indexes(tmp_path_factory):
    """Two different indexes of the same shape, saved: {1: path, 2: path}."""
    root = tmp_path_factory.mktemp("indexes")
    paths = {}
    for version, seed in ((1, 1), (2, 2)):
        paths[version] = root / f"index{version}"
        _index(seed).save(paths[version])
    return paths


@pytest.fixture(scope="session")
def reference(saved_indexes):
    """The indexes as tfrs_kit loads them: what the server must answer."""
    return {version: tk.load_index(path) for version, path in saved_indexes.items()}


@pytest.fixture
def versioned(tmp_path, saved_indexes):
    """A versioned model folder at version 1; ``publish(n, source)`` adds version n."""
    root = tmp_path / "model"
    root.mkdir()

    def publish(version, source=None):
        target = serving.version_path(root, version)
        shutil.copytree(source or saved_indexes[version], target)
        serving.write_latest(root, version)
        return target

    publish(1)
    return root, publish


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"
