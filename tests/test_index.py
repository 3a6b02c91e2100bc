"""The brute-force index against a NumPy reference, its export, and its bad inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk

ITEMS = {"item_id": np.array([f"i{i}" for i in range(30)], dtype=object)}


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    log = {"user_id": np.array([f"u{i % 7}" for i in range(60)], dtype=object),
           "item_id": np.array([f"i{i % 30}" for i in range(60)], dtype=object)}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=8),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=8))
    model.fit(log, epochs=1, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def index(model):
    return tk.IndexBuilder(k_max=20).build(model, ITEMS)


def _reference(model, users, k, exclude=None):
    scores = model.query_embeddings({"user_id": users}) @ model.candidate_embeddings(ITEMS).T
    for row, ids in enumerate(exclude or []):
        scores[row, [int(i[1:]) for i in ids]] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ITEMS["item_id"][top], np.take_along_axis(scores, top, axis=1)


def test_recommend_matches_numpy_argsort(model, index):
    users = np.array(["u0", "u3", "never-seen"], dtype=object)
    exclude = [["i1", "i2"], [], ["i29"]]
    got = index.recommend({"user_id": users}, k=7, exclude=exclude)
    ids, scores = _reference(model, users, 7, exclude)
    np.testing.assert_allclose(got.scores, scores, rtol=1e-5)
    assert got.ids.tolist() == ids.tolist()
    assert not set(got.ids[0]) & {"i1", "i2"}


def test_batches_give_the_same_answer(index):
    users = {"user_id": np.array([f"u{i % 7}" for i in range(25)], dtype=object)}
    whole = index.recommend(users, k=5)
    batched = index.recommend(users, k=5, batch_size=4)
    assert whole.ids.tolist() == batched.ids.tolist()


def test_similar_items_never_returns_the_item_itself(model, index):
    got = index.similar_items(["i0", "i5"], k=20)
    assert "i0" not in got.ids[0] and "i5" not in got.ids[1]
    embeddings = model.candidate_embeddings(ITEMS)
    scores = embeddings[[0]] @ embeddings.T
    scores[0, 0] = -np.inf
    assert got.ids[0, 0] == ITEMS["item_id"][np.argmax(scores)]


def test_save_load_gives_the_same_results(index, tmp_path):
    index.save(tmp_path / "index")
    loaded = tk.load_index(tmp_path / "index")
    users = {"user_id": ["u1", "u2"]}
    assert loaded.recommend(users, k=5, exclude=[["i0"], []]).ids.tolist() == \
        index.recommend(users, k=5, exclude=[["i0"], []]).ids.tolist()
    assert len(loaded) == 30 and loaded.k_max == 20
    metadata = json.loads((tmp_path / "index" / "tfrs_kit_index.json").read_text())
    assert metadata["query_features"] == {"user_id": {"dtype": "string", "shape": [None]}}


def test_saved_model_serves_in_a_fresh_process_without_tfrs_kit(index, tmp_path):
    index.save(tmp_path / "index")
    expected = index.recommend({"user_id": ["u4"]}, k=20).ids[0].tolist()
    code = (
        "import sys, json\n"
        "sys.modules['tfrs_kit'] = None  # importing it now fails\n"
        "import tensorflow as tf\n"
        f"served = tf.saved_model.load({str(tmp_path / 'index' / 'saved_model')!r})\n"
        "out = served.signatures['serving_default'](user_id=tf.constant(['u4']))\n"
        "print(json.dumps([b.decode() for b in out['ids'].numpy()[0]]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_a_crash_midway_keeps_the_earlier_artifact(index, tmp_path, monkeypatch):
    target = tmp_path / "index"
    index.save(target)
    before = sorted(p.name for p in target.iterdir())

    def crash(*args, **kwargs):
        raise RuntimeError("killed midway")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="killed midway"):
        index.save(target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no half-written leftovers
    monkeypatch.undo()
    assert len(tk.load_index(target)) == 30


def test_save_refuses_to_replace_a_directory_that_is_not_an_index(index, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not an index"):
        index.save(tmp_path / "precious")
    assert (tmp_path / "precious" / "thesis.txt").exists()


@pytest.mark.parametrize("k", [0, 21, 2.5])
def test_k_out_of_range(index, k):
    with pytest.raises(ValueError, match=r"`k` must be an integer from 1 to 20"):
        index.recommend({"user_id": ["u1"]}, k=k)


def test_k_larger_than_the_catalogue(model):
    small = tk.IndexBuilder(k_max=100).build(model, {"item_id": ["i1", "i2"]})
    with pytest.raises(ValueError, match=r"from 1 to 2 \(k_max=100, 2 candidates\)"):
        small.recommend({"user_id": ["u1"]}, k=3)


def test_unknown_exclusions_and_wrong_shapes(index):
    with pytest.raises(ValueError, match=r"unknown ids \['nope'\]"):
        index.recommend({"user_id": ["u1"]}, k=3, exclude=[["nope"]])
    with pytest.raises(ValueError, match=r"one list of ids per query \(1 queries\)"):
        index.recommend({"user_id": ["u1"]}, k=3, exclude=[["i1"], ["i2"]])
    with pytest.raises(KeyError, match="Did you mean to rename 'userid' to 'user_id'"):
        index.recommend({"userid": ["u1"]}, k=3)


def test_load_errors(tmp_path, index):
    with pytest.raises(FileNotFoundError, match="directory written by Index.save"):
        tk.load_index(tmp_path / "missing")
    index.save(tmp_path / "index")
    metadata = tmp_path / "index" / "tfrs_kit_index.json"
    content = json.loads(metadata.read_text())
    metadata.write_text(json.dumps({**content, "format_version": 99}))
    with pytest.raises(ValueError, match="format version 1"):
        tk.load_index(tmp_path / "index")
    metadata.write_text("{broken")
    with pytest.raises(ValueError, match="hold valid index metadata"):
        tk.load_index(tmp_path / "index")


def test_unknown_backend_lists_the_known():
    with pytest.raises(KeyError, match="Known: 'brute_force'"):
        tk.IndexBuilder(backend="annoy")


def test_integer_ids(model):
    vocabs = (tk.VocabularyBuilder().fit({"user": [1, 2]}) |
              tk.VocabularyBuilder().fit({"item": [10, 20, 30]}))
    int_model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                     tk.Tower(vocabs, features=["item"], output_dim=4))
    index = tk.IndexBuilder(k_max=3).build(int_model, {"item": [10, 20, 30]})
    got = index.recommend({"user": [1, 5]}, k=2, exclude=[[10], []])
    assert got.ids.dtype == np.int64 and 10 not in got.ids[0]
