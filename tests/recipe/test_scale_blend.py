"""The blend on the out-of-core path: iALS and the popularity counted shard by shard, the
weights chosen on the validation shard; the blended Recipe serves, saves and loads.

A block log (each user takes items of their block only) is what one epoch of towers
cannot learn from a few hundred rows but a factorisation of the co-occurrences can.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tfrs_kit as tk
from shard_logs import write_shards
from tfrs_kit.features._vocabulary import Vocabulary
from tfrs_kit.recipe._blend import JoinedTower
from tfrs_kit.recipe._inputs import Columns
from tfrs_kit.recipe._scale_blend import count_shards

pytest.importorskip("pyarrow")

FAST = {"time_budget": None, "max_trials": 1, "max_epochs": 1, "verbose": False,
        "in_memory_rows": 0}


def _blocks(n=1200, users=120, blocks=12, per_block=20, seed=0):
    """Users of block ``b`` (user % blocks) pick items of block ``b`` only; distinct times."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    item = (user % blocks) * per_block + rng.integers(0, per_block, n)
    return pd.DataFrame({"user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item],
                         "timestamp": rng.permutation(n).astype(np.int64)})


def _popularity(log, items, window):
    """The reference: log1p of each item's count among the latest ``window`` share of the
    events (by time), standardised over the vocabulary (row 0: the unknown id, 0 events)."""
    latest = log.sort_values("timestamp").tail(int(np.ceil(round(window * len(log), 6))))
    counts = latest["item_id"].value_counts()
    table = np.log1p(np.array([0.0] + [counts.get(t, 0) for t in items.tokens]))
    return (table - table.mean()) / table.std()


def test_the_shard_built_matrix_and_popularity_equal_the_in_memory_ones(tmp_path):
    log = _blocks(300, users=12)
    log = pd.concat([log, log.iloc[:20].assign(timestamp=np.arange(1000, 1020))])  # repeats
    _, paths = write_shards(log, tmp_path)
    users = Vocabulary(name="user_id", kind="categorical",
                       tokens=(*sorted(set(log["user_id"])), "u_unseen"))
    items = Vocabulary(name="item_id", kind="categorical",
                       tokens=tuple(sorted(set(log["item_id"]))[::-1]))
    columns = Columns(tk.Schema(user_id="user_id", item_id="item_id", timestamp="timestamp"),
                      history="history")
    counts = count_shards(paths, columns, users, items)
    expected = np.zeros((users.size, items.size), np.float32)
    for user, item in zip(log["user_id"], log["item_id"], strict=True):
        expected[1 + users.tokens.index(user), 1 + items.tokens.index(item)] = 1.0
    assert isinstance(counts.matrix, sp.csr_matrix) and counts.matrix.dtype == np.float32
    assert counts.matrix.indices.dtype == np.int32
    np.testing.assert_array_equal(counts.matrix.toarray(), expected)
    for window in (1.0, 0.3, 0.1, 0.03):
        np.testing.assert_allclose(counts.popularity(window)[:, 0],
                                   _popularity(log, items, window), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale_blend")
    log = _blocks()
    pattern, _ = write_shards(log, folder / "log")
    recipe = tk.Recipe(work_dir=folder / "work", **FAST).fit(pattern)
    return recipe, log, folder


def test_the_blend_is_chosen_on_the_validation_shard(fitted):
    recipe, _, _ = fitted
    report = recipe.report
    assert list(report.stages) == ["prepare", "search", "blend factors", "final",
                                  "serving tables", "blend"]
    assert report.blend is not None
    assert report.blend.weight > 0  # iALS learned the blocks, one epoch of towers did not
    assert report.blend.scores[report.blend.weight] > 1.5 * report.blend.scores[0.0]
    assert isinstance(recipe.model.query_tower, JoinedTower)


def test_recommend_is_the_blend_formula(fitted):
    """The scores are the towers' over their spread, plus iALS' (fitted here on a matrix
    built here) at the chosen weight over its spread, plus the popularity's."""
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    recipe, _, folder = fitted
    blend, settings = recipe.report.blend, recipe.settings
    train = pd.concat(pd.read_parquet(p) for p in
                      sorted((folder / "work" / "shards" / "train").glob("*.parquet")))
    vocabularies = recipe.model.vocabularies_
    users, items = vocabularies["user_id"], vocabularies["item_id"]
    rows = pd.Index(users.tokens).get_indexer(train["user_id"]) + 1
    columns = pd.Index(items.tokens).get_indexer(train["item_id"]) + 1
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)),
                           shape=(users.size, items.size))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    als = AlternatingLeastSquares(factors=settings.embedding_dim, alpha=settings.warm_alpha,
                                  regularization=settings.warm_regularization, iterations=15,
                                  random_state=recipe.seed, num_threads=1)
    with threadpool_limits(limits=1, user_api="blas"):
        als.fit(matrix, show_progress=False)
    user_factors, item_factors = als.user_factors.copy(), als.item_factors.copy()
    user_factors[np.diff(matrix.indptr) == 0] = 0
    item_factors[np.asarray(matrix.sum(axis=0)).ravel() == 0] = 0
    queries, candidates = recipe.queries(), recipe.candidates()
    model = recipe.model
    towers = (model.query_tower.tower.embed(queries, verbose=False)
              @ model.candidate_tower.tower.embed(candidates, verbose=False).T)
    u = pd.Index(users.tokens).get_indexer(queries["user_id"]) + 1
    i = pd.Index(items.tokens).get_indexer(candidates["item_id"]) + 1
    factorised = user_factors[u] @ item_factors[i].T
    training = train.assign(timestamp=train["timestamp"].astype(np.int64))
    popularity = _popularity(training, items, blend.window)[i]
    expected = (towers / towers.std() + blend.weight * factorised / factorised.std()
                + blend.popularity * popularity[None, :])
    top = recipe.recommend(queries["user_id"].to_numpy(), k=len(candidates),
                           exclude_seen=False)
    got = np.full_like(expected, np.nan)
    position = pd.Index(candidates["item_id"])
    for row, (ids, scores) in enumerate(zip(top.ids, top.scores, strict=True)):
        got[row, position.get_indexer(ids)] = scores
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)


def test_the_blended_recipe_saves_loads_indexes_and_evaluates(fitted, tmp_path):
    recipe, log, _ = fitted
    users = sorted(set(log["user_id"]))[:5]
    recipe.save(tmp_path / "saved")
    loaded = tk.load(tmp_path / "saved")
    assert isinstance(loaded.model.query_tower, JoinedTower)
    assert loaded.report.blend == recipe.report.blend
    before, after = recipe.recommend(users, k=5), loaded.recommend(users, k=5)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-5, atol=1e-5)
    index = recipe.build_index(k_max=5).recommend(
        recipe.queries().set_index("user_id").loc[users].reset_index(), k=5)
    unmasked = recipe.recommend(users, k=5, exclude_seen=False)
    np.testing.assert_array_equal(np.asarray(index.ids), unmasked.ids)
    result = tk.evaluate(recipe, _blocks(200, seed=1), train=log, metrics=["recall"], k=10)
    assert result.models == ("Recipe",)


def test_blend_false_keeps_the_towers_alone(tmp_path):
    pattern, _ = write_shards(_blocks(400, users=20), tmp_path / "log")
    recipe = tk.Recipe(blend=False, **FAST).fit(pattern)
    assert recipe.report.blend is None
    assert "blend" not in recipe.report.stages
    assert not isinstance(recipe.model.query_tower, JoinedTower)


def test_a_tight_budget_runs_fewer_iterations_of_the_same_factorisation():
    """Past the deadline three iterations run, and they are implicit's three (rows with no
    interaction at 0); without one, all of them."""
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from tfrs_kit.recipe._scale_blend import factorise_matrix
    from tfrs_kit.recipe._settings import base_settings

    rng = np.random.default_rng(0)
    matrix = sp.random(30, 20, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    matrix.data[:] = 1.0
    matrix = sp.vstack([sp.csr_matrix((1, 20), dtype=np.float32), matrix]).tocsr()
    settings = base_settings(1000, histories=("none",), item_features=(), user_features=())
    factors, run, planned = factorise_matrix(matrix, settings, 0, deadline=-np.inf)
    assert (run, planned) == (3, 15)
    reference = AlternatingLeastSquares(factors=settings.embedding_dim, iterations=3,
                                        alpha=settings.warm_alpha, random_state=0,
                                        regularization=settings.warm_regularization,
                                        num_threads=1)
    with threadpool_limits(limits=1, user_api="blas"):
        reference.fit(matrix, show_progress=False)
    users = reference.user_factors.copy()
    users[0] = 0.0
    np.testing.assert_allclose(factors[0], users, rtol=1e-4, atol=1e-5)
    assert not factors[0][0].any()
    assert factorise_matrix(matrix, settings, 0, deadline=np.inf)[1] == 15
