"""The brute-force index against a NumPy reference, its export, and its bad inputs."""

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import tfrs_kit as tk
from tfrs_kit.index import _backends

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


def test_the_export_saves_the_towers_weights_but_not_their_layer_traces(model, index, tmp_path):
    # The signatures serve; Keras's per-layer call traces were half of each export's
    # time and are never called (a tf-keras upgrade that moved the option fails here).
    index.save(tmp_path / "index")
    saved = tf.saved_model.load(str(tmp_path / "index" / "saved_model"))
    assert not hasattr(saved.query_tower, "call_and_return_all_conditional_losses")
    queries = {"user_id": tf.constant(["u1", "u7"])}
    np.testing.assert_allclose(saved.embed_queries(queries).numpy(),
                               model.query_tower(queries, training=False).numpy(), rtol=1e-6)


def test_saved_model_serves_in_a_fresh_process_without_tfrs_kit(index, tmp_path,
                                                                serve_in_fresh_process):
    index.save(tmp_path / "index")
    expected = index.recommend({"user_id": ["u4"]}, k=20).ids[0].tolist()
    assert serve_in_fresh_process(tmp_path / "index", "user_id", "u4") == expected


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


@pytest.mark.parametrize("k", [0, 21])
def test_k_out_of_range(index, k):
    with pytest.raises(ValueError, match=r"`k` must be an integer from 1 to 20"):
        index.recommend({"user_id": ["u1"]}, k=k)


@pytest.mark.parametrize("k", [2.5, True, "3"])
def test_k_of_the_wrong_type(index, k):
    with pytest.raises(TypeError, match=r"`k` must be an integer\. Received: k="):
        index.recommend({"user_id": ["u1"]}, k=k)
    with pytest.raises(TypeError, match=r"`k` must be an integer\. Received: k="):
        index.similar_items(["i1"], k=k)


def test_k_larger_than_the_catalogue(model):
    small = tk.IndexBuilder(k_max=100).build(model, {"item_id": ["i1", "i2"]})
    with pytest.raises(ValueError, match=r"from 1 to 2 \(k_max=100, 2 candidates\)"):
        small.recommend({"user_id": ["u1"]}, k=3)


def test_unknown_exclusions_and_wrong_shapes(index):
    with pytest.raises(ValueError, match=r"unknown ids \['nope'\]"):
        index.recommend({"user_id": ["u1"]}, k=3, exclude=[["nope"]])
    with pytest.raises(ValueError, match=r"one list of ids per query \(1 queries\)"):
        index.recommend({"user_id": ["u1"]}, k=3, exclude=[["i1"], ["i2"]])
    with pytest.raises(ValueError, match="Did you mean to rename 'userid' to 'user_id'"):
        index.recommend({"userid": ["u1"]}, k=3)


def test_load_errors(tmp_path, index):
    with pytest.raises(FileNotFoundError, match=r"directory written by Index\.save"):
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
    with pytest.raises(ValueError, match="Known: 'auto', 'brute_force', 'scann'"):
        tk.IndexBuilder(backend="annoy")
    with pytest.raises(ValueError, match=r"backend='scan'\. Did you mean 'scann'\?"):
        tk.IndexBuilder(backend="scan")
    with pytest.raises(TypeError, match="`backend` must be one of 'auto', 'brute_force', 'scann'"):
        tk.IndexBuilder(backend=None)


def test_integer_ids(model):
    vocabs = (tk.VocabularyBuilder().fit({"user": [1, 2]}) |
              tk.VocabularyBuilder().fit({"item": [10, 20, 30]}))
    int_model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                     tk.Tower(vocabs, features=["item"], output_dim=4))
    index = tk.IndexBuilder(k_max=3).build(int_model, {"item": [10, 20, 30]})
    got = index.recommend({"user": [1, 5]}, k=2, exclude=[[10], []])
    assert got.ids.dtype == np.int64 and 10 not in got.ids[0]


# --- backends, refresh, artifact, bad input -------------------------------------------------


class _ExactNearest(_backends.Searcher):
    """The generic over-fetch-and-filter path, on an exact engine."""

    def __init__(self, embeddings):
        super().__init__(len(embeddings))
        self.embeddings = tf.constant(embeddings)

    def _nearest(self, queries, k):
        scores, top = tf.math.top_k(tf.matmul(queries, self.embeddings, transpose_b=True), k)
        return scores, tf.cast(top, tf.int64)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), queries=st.integers(1, 4), k=st.integers(1, 40),
       chunk=st.integers(1, 50), seed=st.integers(0, 2**16), width=st.integers(0, 45))
def test_searchers_match_a_numpy_reference(n, queries, k, chunk, seed, width):
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, 3)).astype(np.float32)
    query = rng.normal(size=(queries, 3)).astype(np.float32)
    k = min(k, n)
    excluded = rng.integers(-1, n, size=(queries, width))  # -1 pads
    scores = query @ embeddings.T
    for row in range(queries):
        scores[row, excluded[row][excluded[row] >= 0]] = -np.inf
    kept = np.isfinite(scores).sum(axis=1)
    expected = -np.sort(-scores, axis=1)[:, :k]
    brute = _backends.BruteForce(chunk_size=chunk)
    for searcher in (brute.make_searcher(tf.Variable(embeddings), brute.resolve(n, 3, k)),
                     _ExactNearest(embeddings)):
        got, positions = searcher.search(tf.constant(query), tf.constant(k, tf.int32),
                                         tf.constant(excluded, tf.int64))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
        for row in range(queries):
            found = positions.numpy()[row][: min(k, kept[row])]
            assert not set(found) & set(excluded[row].tolist())
            np.testing.assert_allclose(scores[row, found], expected[row, : len(found)],
                                       rtol=1e-5, atol=1e-5)


def test_chunked_brute_force_gives_the_same_answer(model, index):
    chunked = tk.IndexBuilder(backend="brute_force", k_max=20,
                              backend_options={"chunk_size": 7}).build(model, ITEMS)
    users = {"user_id": ["u0", "u1", "u6"]}
    exclude = [["i0", "i8", "i29"], [], ["i3"]]
    assert chunked.recommend(users, k=20, exclude=exclude).ids.tolist() == \
        index.recommend(users, k=20, exclude=exclude).ids.tolist()
    assert chunked.backend_options == {"chunk_size": 7}


def test_scann_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "scann", None)  # `import scann` now fails
    monkeypatch.setitem(sys.modules, "scann.scann_ops.py.scann_ops", None)
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[scann\]"'):
        tk.IndexBuilder(backend="scann")


def test_auto_falls_back_to_brute_force_without_scann(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "scann", None)
    monkeypatch.setitem(sys.modules, "scann.scann_ops.py.scann_ops", None)
    monkeypatch.setattr(_backends, "AUTO_SCANN_THRESHOLD", 10)
    assert tk.IndexBuilder(k_max=5).build(model, ITEMS).backend == "brute_force"


def test_loading_a_scann_index_without_scann(index, tmp_path, monkeypatch):
    index.save(tmp_path / "index")
    metadata = tmp_path / "index" / "tfrs_kit_index.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "backend": "scann"}))
    monkeypatch.setitem(sys.modules, "scann", None)
    monkeypatch.setitem(sys.modules, "scann.scann_ops.py.scann_ops", None)
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[scann\]"'):
        tk.load_index(tmp_path / "index")


def test_bad_backend_options():
    with pytest.raises(ValueError, match="Did you mean 'num_leaves'"):
        tk.IndexBuilder(backend="auto", backend_options={"num_leafs": 10})
    with pytest.raises(ValueError, match="Known: 'chunk_size'"):
        tk.IndexBuilder(backend="brute_force", backend_options={"num_leaves": 10})
    with pytest.raises(TypeError, match="`backend_options` must be a dict"):
        tk.IndexBuilder(backend_options=[("chunk_size", 3)])
    with pytest.raises(ValueError, match=r"`k_max` must be an integer >= 1"):
        tk.IndexBuilder(k_max=0)
    with pytest.raises(TypeError, match=r"`k_max` must be an integer >= 1\. Received: k_max='5'"):
        tk.IndexBuilder(k_max="5")
    with pytest.raises(TypeError, match=r"`batch_size` must be an integer >= 1"):
        tk.IndexBuilder(batch_size=True)


@pytest.mark.parametrize("value, error", [(0, ValueError), (True, TypeError), (2.0, TypeError)])
def test_bad_chunk_size(model, value, error):
    builder = tk.IndexBuilder(backend="brute_force", backend_options={"chunk_size": value})
    with pytest.raises(error, match=r"`backend_options\['chunk_size'\]` must be an integer >= 1"):
        builder.build(model, ITEMS)


def test_bad_recommend_batch_size(index):
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1"):
        index.recommend({"user_id": ["u1"]}, k=2, batch_size=0)
    with pytest.raises(TypeError, match=r"`batch_size` must be an integer >= 1"):
        index.recommend({"user_id": ["u1"]}, k=2, batch_size=8.0)


def test_artifact_holds_vocabularies_and_backend_metadata(model, index, tmp_path):
    index.save(tmp_path / "index")
    assert tk.Vocabularies.load(tmp_path / "index" / "vocabularies.json") == \
        model.query_tower.vocabularies
    metadata = json.loads((tmp_path / "index" / "tfrs_kit_index.json").read_text())
    assert metadata["backend"] == "brute_force"
    assert metadata["backend_options"] == {"chunk_size": 65536}
    assert metadata["tfrs_kit_version"] == tk.__version__
    assert metadata["tensorflow_version"] == tf.__version__
    assert metadata["embedding_dim"] == 8 and metadata["num_candidates"] == 30
    loaded = tk.load_index(tmp_path / "index")
    assert loaded.vocabularies == model.query_tower.vocabularies
    assert loaded.backend_options == index.backend_options


def test_partial_and_corrupt_artifacts(index, tmp_path):
    for broken in ("vocabularies.json", "saved_model"):
        target = tmp_path / broken
        index.save(target)
        path = target / broken
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        with pytest.raises(FileNotFoundError, match=f"missing: {broken}"):
            tk.load_index(target)
    index.save(tmp_path / "bad_model")
    (tmp_path / "bad_model" / "saved_model" / "saved_model.pb").write_bytes(b"not a proto")
    with pytest.raises(ValueError, match="hold a complete SavedModel"):
        tk.load_index(tmp_path / "bad_model")
    index.save(tmp_path / "no_variables")
    shutil.rmtree(tmp_path / "no_variables" / "saved_model" / "variables")
    with pytest.raises(ValueError, match="hold a complete SavedModel"):
        tk.load_index(tmp_path / "no_variables")
    index.save(tmp_path / "bad_vocab")
    (tmp_path / "bad_vocab" / "vocabularies.json").write_text("{oops")
    with pytest.raises(ValueError, match="vocabularies"):
        tk.load_index(tmp_path / "bad_vocab")


@pytest.mark.parametrize("change, message", [
    ({"format": "something.else"}, "hold valid index metadata"),
    ({"k_max": None}, "hold valid index metadata"),
    ({"format_version": 0}, r"format version 1\. Received: path='format_version=0"),
    ({"backend": "faiss"}, "hold an index of a known backend"),
    ({"num_candidates": 31}, "matching its metadata"),
])
def test_incompatible_or_edited_metadata(index, tmp_path, change, message):
    index.save(tmp_path / "index")
    metadata = tmp_path / "index" / "tfrs_kit_index.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), **change}))
    with pytest.raises(ValueError, match=message):
        tk.load_index(tmp_path / "index")
    del_key = json.loads(metadata.read_text())
    del del_key["backend_options"]
    metadata.write_text(json.dumps(del_key))
    with pytest.raises(ValueError, match="hold valid index metadata"):
        tk.load_index(tmp_path / "index")


def test_query_features_of_the_wrong_dtype(index):
    with pytest.raises(TypeError, match=r"`query_features\['user_id'\]` must hold string"):
        index.recommend({"user_id": np.array([1.5, 2.0])}, k=3)
    with pytest.raises(TypeError, match=r"`query_features\['user_id'\]` must hold string ids"):
        index.recommend({"user_id": [1]}, k=3)  # was the unknown user "1", silently
    vocabs = (tk.VocabularyBuilder().fit({"user": [1, 2]}) |
              tk.VocabularyBuilder().fit({"item": [10, 20, 30]}))
    int_model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                     tk.Tower(vocabs, features=["item"], output_dim=4))
    int_index = tk.IndexBuilder(k_max=3).build(int_model, {"item": [10, 20, 30]})
    with pytest.raises(TypeError, match=r"`query_features\['user'\]` must hold number ids"):
        int_index.recommend({"user": ["alice"]}, k=2)
    with pytest.raises(TypeError, match="must hold int64 ids like the index"):
        int_index.recommend({"user": [1]}, k=2, exclude=[["x"]])  # ids of another kind
    with pytest.raises(TypeError, match="not single ids"):
        index.recommend({"user_id": ["u1"]}, k=2, exclude=["i1"])


def test_the_default_k_is_10_or_what_the_index_holds_when_less(model, index):
    assert index.recommend({"user_id": ["u1"]}).ids.shape == (1, 10)
    small = tk.IndexBuilder(k_max=3).build(model, ITEMS)
    assert small.recommend({"user_id": ["u1", "u2"]}).ids.shape == (2, 3)
    assert small.similar_items(["i1"]).ids.shape == (1, 3)
    few = tk.IndexBuilder(k_max=20).build(model, {"item_id": ["i1", "i2"]})
    assert few.recommend({"user_id": ["u1"]}).ids.shape == (1, 2)


def test_k_above_k_max_says_how_to_get_more(index):
    with pytest.raises(ValueError, match="Build the index with a larger k_max"):
        index.recommend({"user_id": ["u1"]}, k=21)
    with pytest.raises(ValueError, match=r"`item_ids` must name candidate ids in the index"):
        index.similar_items(["i1", "nope"], k=3)


def _all_scores(index, users):
    got = index.recommend({"user_id": users}, k=len(index))
    return [dict(zip(ids, scores, strict=True))
            for ids, scores in zip(got.ids, got.scores, strict=True)]


def test_refresh_adds_and_replaces_candidates(model):
    index = tk.IndexBuilder(k_max=40).build(model, ITEMS)
    tf.keras.utils.set_random_seed(3)
    retrained = tk.TwoTowerRetrieval(tk.Tower(model.query_tower.vocabularies,
                                              features=["item_id"], output_dim=8),
                                     tk.Tower(model.query_tower.vocabularies,
                                              features=["item_id"], output_dim=8))
    new = {"item_id": np.array(["i0", "i-new"], dtype=object)}
    refreshed = index.with_candidates(retrained.candidate_tower, new)
    assert len(refreshed) == 31 and len(index) == 30  # the old index is unchanged
    assert refreshed.ids.tolist() == [*ITEMS["item_id"], "i-new"]
    users = np.array(["u0", "u5"], dtype=object)
    queries = model.query_embeddings({"user_id": users})  # the index keeps its query tower
    new_embeddings = retrained.candidate_embeddings(new)
    old_embeddings = model.candidate_embeddings(ITEMS)
    for row, scores in enumerate(_all_scores(refreshed, users)):
        assert scores["i0"] == pytest.approx(queries[row] @ new_embeddings[0], rel=1e-5)
        assert scores["i-new"] == pytest.approx(queries[row] @ new_embeddings[1], rel=1e-5)
        assert scores["i7"] == pytest.approx(queries[row] @ old_embeddings[7], rel=1e-5)
    assert "i-new" in refreshed.similar_items(["i0"], k=30).ids[0]
    only_new = index.with_candidates(model, new, keep_existing=False)
    assert only_new.ids.tolist() == ["i0", "i-new"]
    query = model.query_embeddings({"user_id": ["u1"]})[0]
    own = model.candidate_embeddings(new)  # embedded by `model`'s own candidate tower
    best_first = np.array(["i0", "i-new"])[np.argsort(-(own @ query))]
    assert only_new.recommend({"user_id": ["u1"]}, k=2).ids[0].tolist() == best_first.tolist()


def test_refreshed_index_saves_and_serves(model, index, tmp_path):
    refreshed = index.with_candidates(model, {"item_id": ["i-new"]})
    refreshed.save(tmp_path / "index")
    loaded = tk.load_index(tmp_path / "index")
    assert len(loaded) == 31 and "i-new" in loaded.ids
    assert loaded.recommend({"user_id": ["u2"]}, k=20).ids.tolist() == \
        refreshed.recommend({"user_id": ["u2"]}, k=20).ids.tolist()


def test_refresh_bad_input(model, index, tmp_path):
    with pytest.raises(TypeError, match="`model` must be a TwoTowerRetrieval or its candidate"):
        index.with_candidates("model", ITEMS)
    with pytest.raises(ValueError, match="candidate id"):
        index.with_candidates(model, {"item": ["x"]})
    with pytest.raises(TypeError, match=r"ids of the same kind as the index \(string ids\)"):
        index.with_candidates(model, {"item_id": [1, 2]})
    wide = tk.Tower(model.query_tower.vocabularies, features=["item_id"], output_dim=5)
    with pytest.raises(ValueError, match="embed candidates in 8 dimensions"):
        index.with_candidates(wide, {"item_id": ["i1"]})
    index.save(tmp_path / "index")
    with pytest.raises(ValueError, match="built in this process to be refreshed"):
        tk.load_index(tmp_path / "index").with_candidates(model, {"item_id": ["i1"]})


@pytest.mark.parametrize(("verbose", "error"), [
    (0, TypeError), (1, TypeError), (None, TypeError), ("loud", ValueError),
])
def test_build_takes_auto_true_or_false(model, verbose, error):
    with pytest.raises(error, match=r"`verbose` must be 'auto', True or False\. Received: "):
        tk.IndexBuilder(k_max=2).build(model, ITEMS, verbose=verbose)


# --- artifacts that fail safe (docs/reliability.md) --------------------------------------


def test_load_index_says_what_is_wrong_with_the_path(index, tmp_path):
    index.save(tmp_path / "index")
    with pytest.raises(FileNotFoundError, match=r"not its SavedModel\. .*Pass its parent: "
                                                r"load_index\(.*index'\)"):
        tk.load_index(tmp_path / "index" / "saved_model")
    with pytest.raises(FileNotFoundError, match="It does not exist"):
        tk.load_index(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="It is a file"):
        tk.load_index(tmp_path / "index" / "vocabularies.json")


def test_vocabularies_that_do_not_belong_to_the_saved_model_are_refused(index, tmp_path):
    index.save(tmp_path / "index")
    other = tk.VocabularyBuilder().fit({"user_id": ["someone", "else"]})
    other.save(tmp_path / "index" / "vocabularies.json")  # valid JSON, wrong vocabularies
    with pytest.raises(ValueError, match=r"hold the vocabularies exported with its SavedModel"):
        tk.load_index(tmp_path / "index")


def test_export_directories_follow_the_umask(index, tmp_path):
    old = __import__("os").umask(0o022)
    try:
        index.save(tmp_path / "index")
    finally:
        __import__("os").umask(old)
    for folder in (tmp_path / "index", tmp_path / "index" / "saved_model"):
        assert folder.stat().st_mode & 0o777 == 0o755, oct(folder.stat().st_mode)


def test_a_swap_killed_between_its_renames_is_recovered(index, tmp_path):
    target = tmp_path / "index"
    index.save(target)
    # What a SIGKILL between the two renames leaves (tests/index/test_export_kill.py does it for
    # real): no target, the previous export hidden, a whole staged one beside it.
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    target.rename(tmp_path / f".index.old-{dead}-0a1b2c3d")
    shutil.copytree(tmp_path / f".index.old-{dead}-0a1b2c3d", tmp_path / f".index.tmp-{dead}-99")
    restored = tk.load_index(target)  # moves the previous export back
    assert len(restored) == 30 and target.is_dir()
    index.save(target)  # and the next save removes the stale staging directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_stale_staging_of_a_killed_export_is_cleaned_but_not_a_running_ones(index, tmp_path):
    import os

    (tmp_path / ".index.tmp-old_style_x").mkdir()  # left by an older version (mkdtemp name)
    (tmp_path / f".index.tmp-{2**22 + 1}-ab").mkdir()
    (tmp_path / f".index.tmp-{os.getppid()}-cd").mkdir()  # a live process: left alone
    (tmp_path / ".other.tmp-1-ab").mkdir()  # another index's: left alone
    index.save(tmp_path / "index")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".index.tmp-{os.getppid()}-cd", ".other.tmp-1-ab", "index"]


def test_saving_over_a_file_or_into_a_file_is_refused_before_any_work(index, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(tf.saved_model, "save", lambda *a, **k: pytest.fail("wrote anyway"))
    (tmp_path / "a_file").write_text("keep")
    with pytest.raises(FileExistsError, match="It is a file"):
        index.save(tmp_path / "a_file")
    with pytest.raises(FileExistsError, match="a_file is a file"):
        index.save(tmp_path / "a_file" / "index")
    assert (tmp_path / "a_file").read_text() == "keep"


@pytest.mark.parametrize("failure", ["disk full", "permission denied"])
def test_a_failed_write_keeps_the_old_artifact_and_leaves_nothing(index, tmp_path,
                                                                  monkeypatch, failure):
    import errno

    target = tmp_path / "index"
    index.save(target)
    before = tk.load_index(target).recommend({"user_id": ["u1"]}, k=5)
    code = errno.ENOSPC if failure == "disk full" else errno.EACCES

    def fail(*args, **kwargs):
        raise OSError(code, failure)

    monkeypatch.setattr(tk.Vocabularies, "save", fail)  # after the SavedModel is written
    with pytest.raises(OSError, match=failure):
        index.save(target)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    after = tk.load_index(target).recommend({"user_id": ["u1"]}, k=5)
    np.testing.assert_array_equal(after.ids, before.ids)


@pytest.mark.parametrize("victim", ["saved_model/saved_model.pb", "vocabularies.json",
                                    "tfrs_kit_index.json",
                                    "saved_model/variables/variables.data-00000-of-00001"])
def test_a_truncated_artifact_file_is_a_clear_error(index, tmp_path, victim):
    index.save(tmp_path / "index")
    path = tmp_path / "index" / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"`path` must hold (a complete SavedModel|valid "
                                         r"vocabularies|valid index metadata)"):
        tk.load_index(tmp_path / "index")


def test_a_path_of_the_wrong_type(index):
    with pytest.raises(TypeError, match=r"`path` must be a str or os\.PathLike"):
        tk.load_index(None)
    with pytest.raises(TypeError, match=r"`path` must be a str or os\.PathLike"):
        index.save(42)


def test_a_flipped_byte_in_the_variables_is_caught_by_their_checksums(index, tmp_path):
    index.save(tmp_path / "index")
    data = tmp_path / "index" / "saved_model" / "variables" / "variables.data-00000-of-00001"
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # a silent disk error: same size, one bit pattern off
    data.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"`path` must hold a complete SavedModel.*Checksum"):
        tk.load_index(tmp_path / "index")


def test_whole_floats_and_booleans_query_an_integer_feature_as_fit_read_them():
    log = pd.DataFrame({"user_id": ["a", "b", "c", "a"], "item_id": ["x", "y", "z", "y"],
                        "age": [25, 30, 25, 25], "vip": [True, False, True, True]})
    kinds = {"user_id": "categorical", "item_id": "categorical", "age": "categorical",
             "vip": "categorical"}
    vocabs = tk.VocabularyBuilder().fit(log, features=kinds, verbose=False)
    model = tk.TwoTowerRetrieval(
        tk.Tower(vocabs, features=["user_id", "age", "vip"], output_dim=4),
        tk.Tower(vocabs, features=["item_id"], output_dim=4))
    index = tk.IndexBuilder(k_max=3).build(model, log[["item_id"]].drop_duplicates())
    as_ints = index.recommend({"user_id": ["a", "b"], "age": np.array([25, 30]),
                               "vip": np.array([1, 0])}, k=3)
    as_read = index.recommend({"user_id": ["a", "b"], "age": np.array([25.0, 30.0]),
                               "vip": np.array([True, False])}, k=3)
    np.testing.assert_array_equal(as_read.ids, as_ints.ids)
    np.testing.assert_allclose(as_read.scores, as_ints.scores, rtol=1e-6)
    # The same rows through the towers directly (what fit reads) give the same scores.
    queries = model.query_tower.embed({"user_id": ["a", "b"], "age": [25.0, 30.0],
                                       "vip": [True, False]})
    items = model.candidate_tower.embed({"item_id": list(as_ints.ids[0])})
    np.testing.assert_allclose(as_read.scores[0], queries[0] @ items.T, rtol=1e-5)
    with pytest.raises(ValueError, match=r"must hold whole numbers.*declare the feature as "
                                         r"'numeric'"):
        index.recommend({"user_id": ["a"], "age": np.array([25.5]), "vip": [True]}, k=1)
