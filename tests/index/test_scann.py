"""The ScaNN backend against brute force: recall, exact scores, exclusions, export, refresh."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tfrs_kit as tk
from tfrs_kit.index import _backends

pytest.importorskip("scann")

ITEMS = np.array([f"i{i}" for i in range(3000)], dtype=object)
USERS = np.array([f"u{i}" for i in range(40)], dtype=object)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(1)
    vocabs = (tk.VocabularyBuilder().fit({"user_id": USERS}) |
              tk.VocabularyBuilder().fit({"item_id": ITEMS}))
    return tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=16),
                                tk.Tower(vocabs, features=["item_id"], output_dim=16))


@pytest.fixture(scope="module")
def exact(model):
    return tk.IndexBuilder(backend="brute_force", k_max=50).build(model, {"item_id": ITEMS})


@pytest.fixture(scope="module")
def index(model):
    return tk.IndexBuilder(backend="scann", k_max=50).build(model, {"item_id": ITEMS})


def _recall(got, expected):
    return np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, expected, strict=True)])


def test_defaults_derive_from_the_catalogue_size():
    params = _backends.ScaNN().resolve(1_000_000, 64, 100)
    assert params["num_leaves"] == 1000
    assert params["num_leaves_to_search"] == 50
    assert params["num_reordering_candidates"] == 400
    assert params["training_sample_size"] == 100_000
    small = _backends.ScaNN().resolve(500, 8, 10)
    assert small["num_leaves"] == 0 and small["num_reordering_candidates"] == 100


def test_recall_against_brute_force_and_exact_scores(model, index, exact):
    assert index.backend == "scann" and index.backend_options["num_leaves"] == 55
    got = index.recommend({"user_id": USERS}, k=50)
    expected = exact.recommend({"user_id": USERS}, k=50)
    assert _recall(got.ids, expected.ids) >= 0.95
    # reordering rescored them exactly: scores are the true dot products, best first
    queries = model.query_embeddings({"user_id": USERS})
    items = model.candidate_embeddings({"item_id": ITEMS})
    positions = np.vectorize(lambda i: int(i[1:]))(got.ids)
    true = np.einsum("qd,qkd->qk", queries, items[positions])
    np.testing.assert_allclose(got.scores, true, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(got.scores, axis=1) <= 1e-6)


def test_exclusions_are_never_returned_and_k_stays_full(index, exact):
    top = exact.recommend({"user_id": USERS}, k=50).ids
    exclude = [list(row[:30]) for row in top]  # the 30 best of each user
    got = index.recommend({"user_id": USERS}, k=50, exclude=exclude)
    expected = exact.recommend({"user_id": USERS}, k=50, exclude=exclude)
    assert not any(set(g) & set(e) for g, e in zip(got.ids, exclude, strict=True))
    assert np.isfinite(got.scores).all()
    assert _recall(got.ids, expected.ids) >= 0.9


def test_k_is_chosen_per_call_and_batches_agree(index):
    users = {"user_id": USERS}
    five, batched = index.recommend(users, k=5), index.recommend(users, k=5, batch_size=7)
    assert five.ids.shape == (40, 5) and five.ids.tolist() == batched.ids.tolist()
    with pytest.raises(ValueError, match="from 1 to 50"):
        index.recommend(users, k=51)


def test_similar_items(index, exact):
    got = index.similar_items(["i0", "i7"], k=10)
    assert "i0" not in got.ids[0] and "i7" not in got.ids[1]
    assert _recall(got.ids, exact.similar_items(["i0", "i7"], k=10).ids) >= 0.9


def test_options_override_the_defaults(model, exact):
    index = tk.IndexBuilder(backend="scann", k_max=10,
                            backend_options={"num_leaves": 20, "num_leaves_to_search": 5}) \
        .build(model, {"item_id": ITEMS})
    assert index.backend_options["num_leaves"] == 20
    assert index.backend_options["num_leaves_to_search"] == 5
    got = index.recommend({"user_id": USERS}, k=10).ids
    # 5 of 20 leaves searched: still most of the exact top 10 (a shape check said nothing)
    assert _recall(got, exact.recommend({"user_id": USERS}, k=10).ids) >= 0.5
    with pytest.raises(ValueError, match=r"backend_options\['num_leaves'\]` must be an integer"):
        tk.IndexBuilder(backend="scann", backend_options={"num_leaves": -1}).build(
            model, {"item_id": ITEMS})


@pytest.mark.parametrize("options, error, message", [
    ({"num_leaves": 3001}, ValueError, r"`backend_options\['num_leaves'\]` must be an integer "
                                       r"between 0 and 3000\. Received: .*=3001"),
    ({"num_leaves": "10"}, TypeError, r"`backend_options\['num_leaves'\]` must be an integer"),
    ({"training_iterations": 0}, ValueError,
     r"`backend_options\['training_iterations'\]` must be an integer >= 1"),
    ({"num_reordering_candidates": 1.5}, TypeError,
     r"`backend_options\['num_reordering_candidates'\]` must be an integer >= 1"),
])
def test_bad_option_values(options, error, message):
    with pytest.raises(error, match=message):
        _backends.ScaNN(**options).resolve(3000, 16, 10)


def test_auto_picks_scann_for_large_catalogues(model, monkeypatch):
    monkeypatch.setattr(_backends, "AUTO_SCANN_THRESHOLD", 1000)
    assert tk.IndexBuilder(k_max=5).build(model, {"item_id": ITEMS}).backend == "scann"
    assert tk.IndexBuilder(k_max=5).build(model, {"item_id": ITEMS[:999]}).backend == \
        "brute_force"


def test_save_load_and_serve_in_a_fresh_process_with_only_scann(index, tmp_path,
                                                                serve_in_fresh_process):
    index.save(tmp_path / "index")
    metadata = json.loads((tmp_path / "index" / "tfrs_kit_index.json").read_text())
    assert metadata["backend"] == "scann" and metadata["scann_version"]
    assert metadata["backend_options"] == index.backend_options
    loaded = tk.load_index(tmp_path / "index")
    users = {"user_id": ["u3", "u4"]}
    exclude = [["i1"], []]
    assert loaded.recommend(users, k=20, exclude=exclude).ids.tolist() == \
        index.recommend(users, k=20, exclude=exclude).ids.tolist()
    expected = index.recommend({"user_id": ["u4"]}, k=50).ids[0].tolist()
    served = serve_in_fresh_process(tmp_path / "index", "user_id", "u4",
                                    imports="import scann  # registers ScaNN's ops\n")
    assert served == expected


def test_refresh_rebuilds_the_searcher(model, index):
    new_items = {"item_id": np.array(["i5", "brand-new"], dtype=object)}
    refreshed = index.with_candidates(model, new_items)
    assert refreshed.backend == "scann" and len(refreshed) == len(index) + 1
    assert "brand-new" in refreshed.ids and "brand-new" not in index.ids
    got = refreshed.recommend({"user_id": USERS}, k=50).ids
    exact = tk.IndexBuilder(backend="brute_force", k_max=50).build(
        model, {"item_id": np.concatenate([ITEMS, ["brand-new"]])})
    assert _recall(got, exact.recommend({"user_id": USERS}, k=50).ids) >= 0.95
    similar = refreshed.similar_items(["brand-new"], k=5).ids
    assert "brand-new" not in similar[0]
