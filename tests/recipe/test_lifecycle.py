"""Recipe.save, tk.load, versions and rollback: one saved format, atomic, versioned."""

from __future__ import annotations

import json
import shutil
import threading
import time
import warnings

import numpy as np
import pytest
from lock_holder import lock_held_elsewhere

import tfrs_kit as tk
from tfrs_kit.recipe import _save, _store
from tfrs_kit.recipe._report import RecipeReport
from tfrs_kit.recipe._settings import Settings


@pytest.fixture(scope="module")
def split():
    data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=0)
    return tk.evaluation.per_user_temporal_split(data.interactions, test_fraction=0.2)


@pytest.fixture(scope="module")
def fitted(split):
    """The fastest Recipe the suite fits (blend included), fitted once for the module."""
    train, _ = split
    return tk.Recipe(rerank=False, time_budget=None, max_trials=1, max_epochs=2,
                     verbose=False).fit(train)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    """A folder holding version 1 of ``fitted``, never modified by the tests."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    assert fitted.save(folder) == 1
    return folder


def _copy(saved, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def _users(recipe, count=8):
    return recipe.queries()[recipe.columns.user_id].to_numpy()[:count]


def _top(scores, k=10):
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_the_layout_is_one_version_with_a_manifest_and_latest(fitted, saved):
    assert (saved / "latest").read_text() == "1\n"
    version = saved / "versions" / "1"
    assert {p.name for p in version.iterdir()} >= {
        "manifest.json", "vocabularies.json", "weights", "queries.parquet",
        "candidates.parquet", "seen.parquet", "index"}
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["format"] == "tfrs_kit.recipe" and manifest["format_version"] == 1
    assert manifest["tfrs_kit_version"] == tk.__version__
    assert manifest["schema"] == fitted.schema_.to_dict()
    assert Settings.from_dict(manifest["settings"]) == fitted.settings
    if fitted.report.blend is not None and (fitted.report.blend.weight
                                             or fitted.report.blend.popularity):
        assert (version / "blend" / "query_factors.npy").is_file()
    # The serving engineer's server loads the index alone.
    index = tk.load_index(version / "index")
    assert len(index) == len(fitted.candidates())


def test_a_round_trip_gives_the_same_top_k(fitted, saved):
    loaded = tk.load(saved)
    users = _users(fitted)
    before, after = fitted.as_recommender(), loaded.as_recommender()
    np.testing.assert_array_equal(_top(before.score(users)), _top(after.score(users)))
    np.testing.assert_array_equal(fitted.recommend(users, k=10).ids,
                                  loaded.recommend(users, k=10).ids)
    queries = loaded.queries()
    rows = queries[queries[loaded.columns.user_id].isin(users)]
    by_index = tk.load_index(saved / "versions" / "1" / "index").recommend(rows, k=10)
    expected = fitted.recommend(rows[loaded.columns.user_id].to_numpy(), k=10,
                                exclude_seen=False)
    np.testing.assert_array_equal(by_index.ids, expected.ids)


def test_a_loaded_recipe_evaluates_as_the_fitted_one(fitted, saved, split):
    train, test = split
    loaded = tk.load(saved)
    before = tk.evaluate(fitted, test, train=train, k=10).to_dict()["Recipe"]
    after = tk.evaluate(loaded, test, train=train, k=10).to_dict()["Recipe"]
    assert after == pytest.approx(before)
    assert str(loaded.report) == str(fitted.report)
    assert loaded.settings == fitted.settings
    assert len(loaded.build_index(k_max=5)) == len(fitted.candidates())


def test_a_history_only_user_gets_what_the_fitted_model_gives(fitted, saved):
    loaded = tk.load(saved)
    items = fitted.candidates()[fitted.columns.item_id].to_numpy()
    histories = [list(items[:3]), list(items[5:12]), []]
    expected = fitted.recommend(history=histories, k=10)
    got = loaded.recommend(history=histories, k=10)
    np.testing.assert_array_equal(got.ids, expected.ids)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
    for row, history in enumerate(histories):
        assert not set(history) & set(got.ids[row])  # the history's items are left out
    one = loaded.recommend(history=histories[1], k=10)
    np.testing.assert_array_equal(one.ids, got.ids[1:2])
    # An id the model never saw reads the unknown-id embedding: as no id at all.
    named = loaded.recommend(["nobody"], history=[histories[1]], k=10)
    np.testing.assert_array_equal(named.ids, got.ids[1:2])
    # Items none of which the model knows: warned; any such items score alike.
    with pytest.warns(UserWarning, match=r"none of \['zz1', 'zz2'\] is a candidate"):
        blind = loaded.recommend(history=[["zz1", "zz2"]], k=10)
    with pytest.warns(UserWarning, match=r"none of \['zz3'\]"):
        np.testing.assert_array_equal(loaded.recommend(history=["zz3"], k=10).ids, blind.ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one known item among unknown ones: no warning
        loaded.recommend(history=[[items[0], "zz1"]], k=10)


def test_recommend_leaves_out_seen_items_and_checks_its_arguments(fitted, split):
    train, _ = split
    user = _users(fitted, 1)[0]
    seen = set(train.item_id[train.user_id == user])
    top = fitted.recommend(user, k=10)
    assert top.ids.shape == (1, 10) and not seen & set(top.ids[0])
    assert seen & set(fitted.recommend(user, k=40, exclude_seen=False).ids[0])
    with pytest.raises(ValueError, match="`k` must be at most 40"):
        fitted.recommend(user, k=41)
    with pytest.raises(ValueError, match="`users` must be user ids of the training log"):
        fitted.recommend("nobody")
    with pytest.raises(ValueError, match="`users` must name users"):
        fitted.recommend()


def test_each_save_is_a_new_version_and_rollback_moves_latest(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    loaded = tk.load(folder)
    assert loaded.save(folder) == 2
    assert loaded.save(folder) == 3
    listed = tk.recipe.versions(folder)
    assert [v.number for v in listed] == [1, 2, 3]
    assert all(v.created and v.metrics == listed[0].metrics for v in listed)
    assert _store.read_latest(folder) == 3
    assert tk.recipe.rollback(folder) == 2
    assert (folder / "latest").read_text() == "2\n"
    assert tk.recipe.rollback(folder, to=1) == 1
    with pytest.raises(ValueError, match="none precedes the latest"):
        tk.recipe.rollback(folder)
    with pytest.raises(ValueError, match="Saved versions: \\[1, 2, 3\\]"):
        tk.recipe.rollback(folder, to=7)
    assert tk.recipe.rollback(folder, to=3) == 3  # forward again
    assert tk.load(folder, version=1).settings == loaded.settings


def test_a_crash_midway_leaves_the_previous_version_loadable(fitted, saved, tmp_path,
                                                             monkeypatch):
    folder = _copy(saved, tmp_path)

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:  # killed while writing the version
        patch.setattr(_save, "_manifest", crash)
        with pytest.raises(RuntimeError, match="killed"):
            fitted.save(folder)
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["1"]
    with monkeypatch.context() as patch:  # killed after the rename, before latest moved
        patch.setattr(_store, "write_latest", crash)
        with pytest.raises(RuntimeError, match="killed"):
            fitted.save(folder)
    assert _store.read_latest(folder) == 1 and (folder / "versions" / "2").is_dir()
    # A leftover of a run killed with -9 (no cleanup ran) is ignored, then removed.
    leftover = folder / "versions" / ".tmp-3-999999"
    (leftover / "index").mkdir(parents=True)
    users = _users(fitted)
    np.testing.assert_array_equal(tk.load(folder).recommend(users).ids,
                                  fitted.recommend(users).ids)
    assert [v.number for v in tk.recipe.versions(folder)] == [1, 2]
    assert fitted.save(folder) == 3 and not leftover.exists()
    assert _store.read_latest(folder) == 3


def test_a_second_writer_waits_then_fails_clearly(fitted, tmp_path):
    folder = tmp_path / "model"
    with lock_held_elsewhere(folder), pytest.raises(TimeoutError, match="locked by another"):
        fitted.save(folder, wait=0.3)
    assert not (folder / "latest").exists()
    with _store.locked(folder):  # held by this thread: its own save goes on (an update)
        assert fitted.save(folder, wait=0.3) == 1


def test_a_second_writer_waits_for_the_first(fitted, tmp_path):
    folder = tmp_path / "model"
    holding = threading.Event()

    def first_writer():
        with _store.locked(folder):
            holding.set()
            time.sleep(1.0)

    thread = threading.Thread(target=first_writer)
    thread.start()
    holding.wait()
    started = time.monotonic()
    assert fitted.save(folder, wait=60) == 1
    assert time.monotonic() - started >= 0.9
    thread.join()
    assert tk.recipe.versions(folder)[0].number == 1


def test_a_newer_format_version_is_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    manifest_path = folder / "versions" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = _save.FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"format version {_save.FORMAT_VERSION + 1}: "
                                         "upgrade tfrs_kit") as error:
        tk.load(folder)
    assert f"reads up to {_save.FORMAT_VERSION}" in str(error.value)


def test_a_folder_another_tool_wrote_is_refused(fitted, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.bin").write_text("weights")
    with pytest.raises(ValueError, match=r"`path` must be a folder Recipe\.save"):
        tk.load(tmp_path / "other")
    with pytest.raises(ValueError, match=r"Recipe\.save"):
        tk.recipe.versions(tmp_path / "other")
    with pytest.raises(FileExistsError, match="Refusing to write into a folder of other"):
        fitted.save(tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["model.bin"]


def test_settings_and_report_round_trip_through_json(fitted):
    settings = Settings(history="sequence", item_features=("genre",), normalize=True,
                        temperature=0.1)
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    report = fitted.report
    assert RecipeReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    with pytest.raises(ValueError, match="hold only Settings fields"):
        Settings.from_dict({"colour": "red"})
