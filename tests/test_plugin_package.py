"""examples/plugin_package: a separate distribution found through its entry points.

The slow test installs it (offline, without build isolation) into a temporary
directory, trains and exports a model that uses its tower by name in a
subprocess that sees that directory, and reloads the index in a fresh process
that does not have the plugin at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import tfrs_kit as tk
from registry_isolation import isolated_registries
from tfrs_kit.testing import check_dataset, check_tower

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "plugin_package"

TRAIN_AND_EXPORT = """
import json, sys
import tensorflow as tf
import tfrs_kit as tk
from tfrs_kit.testing import check_dataset, check_tower

assert "hashing" in tk.towers.available_towers(), tk.towers.available_towers()
assert "tiny_clicks" in tk.datasets.available_datasets()
Hashing = tk.towers.get_tower("hashing")
check_tower(Hashing, features=["user_id"], output_dim=8, num_buckets=64)
check_dataset("tiny_clicks")

data = tk.datasets.load_dataset("tiny_clicks", num_users=40, num_items=20)
vocabs = tk.VocabularyBuilder().fit(data.interactions, features=["item_id"])
model = tk.TwoTowerRetrieval(
    Hashing(features=["user_id"], output_dim=8, num_buckets=256),
    tk.Tower(vocabs, features=["item_id"], output_dim=8))
model.fit(data.interactions, epochs=5, batch_size=32, seed=0, verbose=0)
index = tk.IndexBuilder(k_max=5).build(model, data.items)
queries = {"user_id": ["user-0", "user-1", "user-unknown"]}
index.save(sys.argv[1])
json.dump(index.recommend(queries, k=5).ids.tolist(), open(sys.argv[2], "w"))

config = json.dumps(tf.keras.utils.serialize_keras_object(model.query_tower))
assert type(tf.keras.models.model_from_json(config)) is Hashing
"""

RELOAD = """
import json, sys
import tfrs_kit as tk

assert "hashing" not in tk.towers.available_towers()  # the plugin is not installed here
index = tk.load_index(sys.argv[1])
queries = {"user_id": ["user-0", "user-1", "user-unknown"]}
assert index.recommend(queries, k=5).ids.tolist() == json.load(open(sys.argv[2]))
print("reloaded", index.ids.size)
"""


def _declared_entry_points() -> dict[str, list[EntryPoint]]:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    return {group: [EntryPoint(name, value, group) for name, value in entries.items()]
            for group, entries in project["entry-points"].items()}


def test_the_package_declares_a_tower_and_a_data_source_that_conform(monkeypatch):
    entry_points = _declared_entry_points()
    assert [e.name for e in entry_points["tfrs_kit.towers"]] == ["hashing"]
    assert [e.name for e in entry_points["tfrs_kit.datasets"]] == ["tiny_clicks"]
    monkeypatch.syspath_prepend(str(PACKAGE / "src"))
    try:
        with isolated_registries(entry_points):
            hashing = tk.towers.get_tower("hashing")
            assert hashing.__module__ == "tfrs_kit_hashing"
            check_tower(hashing, features=["user_id", "item_id"], output_dim=8, num_buckets=64)
            check_dataset("tiny_clicks", num_users=6)
    finally:
        sys.modules.pop("tfrs_kit_hashing", None)


def _run(script: str, *args: str, env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.mark.slow
@pytest.mark.process
def test_installed_plugin_is_found_trained_exported_and_served_without_it(tmp_path):
    source = tmp_path / "plugin_package"  # a copy: building writes build/ and egg-info
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "tfrs_kit_hashing").is_dir()

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    index, expected = tmp_path / "index", tmp_path / "expected.json"
    _run(TRAIN_AND_EXPORT, str(index), str(expected), env={**env, "PYTHONPATH": str(site)},
         cwd=tmp_path)
    assert len(json.loads(expected.read_text())) == 3
    out = _run(RELOAD, str(index), str(expected), env=env, cwd=tmp_path)
    assert "reloaded 20" in out
