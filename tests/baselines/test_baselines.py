"""Baselines on data with a known answer, against dense references, and their errors."""

from __future__ import annotations

import sys
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from tfrs_kit._errors import NotFittedError
from tfrs_kit.baselines import (
    BPR,
    EASE,
    ImplicitALS,
    ItemKNN,
    Popularity,
    RP3beta,
    UserKNN,
    default_grid,
    tune,
)
from tfrs_kit.evaluation import Recommender, evaluate, per_user_temporal_split

ALL = [Popularity(), ItemKNN(neighbors=20), UserKNN(neighbors=20), EASE(l2=10.0),
       RP3beta(neighbors=20)]
PERSONAL = [m for m in ALL if not isinstance(m, Popularity)]


def checkerboard():
    """Users 0-9 like items 0-4, users 10-19 like items 5-9; each misses one of its group."""
    train, test = {"user_id": [], "item_id": []}, {"user_id": [], "item_id": []}
    for user in range(20):
        group = range(0, 5) if user < 10 else range(5, 10)
        held_out = group[user % 5]
        for item in group:
            side = test if item == held_out else train
            side["user_id"].append(user)
            side["item_id"].append(item)
    return train, test


@pytest.mark.parametrize("model", PERSONAL, ids=repr)
def test_checkerboard_recall_at_one_is_perfect(model):
    train, test = checkerboard()
    report = evaluate(model.fit(train), test, train=train, k=1, metrics=["recall", "ndcg"])
    assert report.to_dict()[type(model).__name__] == {"recall@1": 1.0, "ndcg@1": 1.0}


@pytest.mark.parametrize("model", ALL, ids=repr)
def test_every_baseline_is_a_recommender(model):
    train, _ = checkerboard()
    assert model.fit(train) is model
    assert isinstance(model, Recommender)
    assert model.item_ids.tolist() == list(range(10))
    scores = model.score(np.array([3, 15, 999]))  # 999 is unknown
    assert scores.shape == (3, 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores[2], model.item_popularity_)


@pytest.mark.parametrize("model", [Popularity(), ItemKNN(), UserKNN(), EASE(), RP3beta()],
                         ids=repr)
def test_not_fitted(model):
    with pytest.raises(NotFittedError, match="Call `fit"):
        model.score([1])
    with pytest.raises(NotFittedError):
        _ = model.item_ids


def random_interactions(seed=0, n_users=12, n_items=9):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.35).astype(float)
    dense[dense.sum(axis=1) == 0, 0] = 1.0
    dense[0, dense.sum(axis=0) == 0] = 1.0
    users, items = np.nonzero(dense)
    log = {"user_id": np.concatenate([users, users[:5]]),  # repeats count once
           "item_id": np.concatenate([items, items[:5]])}
    return dense, log


def top(sims, n):
    out = np.zeros_like(sims)
    for row, values in enumerate(sims):
        keep = np.argsort(-values, kind="stable")[:n]
        out[row, keep] = np.maximum(values[keep], 0)
    return out


def cosine(a, shrinkage):
    norms = np.sqrt((a * a).sum(axis=1))
    return (a @ a.T) / (norms[:, None] * norms[None, :] + shrinkage)


def test_popularity_counts_distinct_users():
    dense, log = random_interactions()
    scores = Popularity().fit(log).score(np.arange(12))
    np.testing.assert_array_equal(scores, np.tile(dense.sum(axis=0), (12, 1)))


# Ten events, rows shuffled; by time: a, a, a by users 1-3; b by 4 and 1; c by 5; d by 6;
# c by 6 twice (one distinct user); b by 7. Distinct users over all: a 3, b 3, c 2, d 1.
TIMED = pd.DataFrame(
    [(6, "c", 9), (1, "a", 1), (4, "b", 4), (6, "d", 7), (2, "a", 2), (7, "b", 10),
     (5, "c", 6), (3, "a", 3), (1, "b", 5), (6, "c", 8)],
    columns=["user_id", "item_id", "timestamp"])


@pytest.mark.parametrize(("window", "expected"), [
    # Latest 5 (times 6-10): c 2 (users 5, 6), b 1, d 1, a 0; b beats d by all-time 3 > 1.
    (0.5, [1.0, 3.0, 4.0, 2.0]),
    # Latest 3 (times 8-10): c 1 (user 6 twice), b 1, a 0, d 0;
    # b beats c (all-time 3 > 2), a beats d (3 > 1).
    (0.3, [2.0, 4.0, 3.0, 1.0]),
    (1.0, [3.0, 3.0, 2.0, 1.0]),  # all events: the distinct users themselves
])
def test_popularity_window_counts_distinct_users_among_the_latest_events(window, expected):
    model = Popularity(window=window).fit(TIMED)
    assert model.item_ids.tolist() == ["a", "b", "c", "d"]
    scores = model.score(np.array([1, 6, 999]))  # 999 is unknown: the same list
    np.testing.assert_array_equal(scores, np.tile(expected, (3, 1)))


def test_popularity_window_is_the_share_of_events_rounded_up_exactly():
    # 100 events by distinct users: "z" at times 0-91, "x" at 92, "y" at 93-99. A window
    # of 0.07 holds the latest 7 (0.07 * 100 is 7.000000000000001 in floating point):
    # "y" 7, "x" and "z" none, "z" ahead by all-time 92 > 1. With 8, "x" would beat "z".
    items = ["z"] * 92 + ["x"] + ["y"] * 7
    log = {"user_id": np.arange(100), "item_id": items, "timestamp": np.arange(100)}
    np.testing.assert_array_equal(Popularity(window=0.07).fit(log).score([0]), [[1.0, 3.0, 2.0]])
    # 0.071 * 100 is 7.1: 8 events, "x" among them.
    np.testing.assert_array_equal(Popularity(window=0.071).fit(log).score([0]), [[2.0, 3.0, 1.0]])


def test_popularity_window_keeps_every_event_at_the_cut_time():
    # The latest 2 of 4 events end at time 2, which "b" and "c" share: both count,
    # whatever the row order; every item then has one user, in the window and overall.
    log = {"user_id": [1, 2, 3, 4], "item_id": ["a", "b", "c", "d"], "timestamp": [1, 2, 2, 3]}
    flipped = {column: values[::-1] for column, values in log.items()}
    for table in (log, flipped):
        scores = Popularity(window=0.5).fit(table).score([1])
        np.testing.assert_array_equal(scores, [[1.0, 2.0, 2.0, 2.0]])


def test_popularity_window_one_is_the_all_time_count_and_reads_no_time():
    dense, log = random_interactions()
    expected = np.tile(dense.sum(axis=0), (13, 1))  # 12 users and an unknown one
    users = np.arange(13)
    np.testing.assert_array_equal(Popularity(window=1.0).fit(log).score(users), expected)
    # No time is needed, nor read: a column of missing times or a missing column is fine.
    with_nan = {**log, "timestamp": np.full(len(log["user_id"]), np.nan)}
    np.testing.assert_array_equal(Popularity().fit(with_nan).score(users), expected)
    np.testing.assert_array_equal(
        Popularity().fit(log, timestamp="absent").score(users), expected)
    assert repr(Popularity()) == "Popularity(window=1.0)"


def test_popularity_window_reads_a_named_time_column():
    renamed = TIMED.rename(columns={"timestamp": "when", "user_id": "u", "item_id": "i"})
    model = Popularity(window=0.5).fit(renamed, user_id="u", item_id="i", timestamp="when")
    np.testing.assert_array_equal(model.score([1]), [[1.0, 3.0, 4.0, 2.0]])


@pytest.mark.parametrize(("window", "error"), [
    (0.0, ValueError), (1.5, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
    ("0.3", TypeError), (True, TypeError),
])
def test_popularity_rejects_a_window_outside_zero_to_one(window, error):
    with pytest.raises(error, match=r"`window` must be a finite number > 0.0 and <= 1.0\. "
                                    rf"Received: window={window!r}"):
        Popularity(window=window)


def test_popularity_window_without_a_time_column_says_what_to_do():
    log = TIMED.rename(columns={"timestamp": "time"})
    with pytest.raises(ValueError, match=(
            r"`window` must be 1.0 \(all events\) unless `train` has a timestamp column "
            r"to order them by\. Received: window=0.3\. `train` must have a column "
            r"'timestamp' \(named by `timestamp`\).*Did you mean timestamp='time'\? "
            r"Or pass window=1.0 to count all events\.")):
        Popularity(window=0.3).fit(log)
    with pytest.raises(ValueError, match=r"`window` must be 1.0.*Received: window=0.3\. "
                                         r"Received timestamp=None\. Pass timestamp="):
        Popularity(window=0.3).fit(TIMED, timestamp=None)
    # A missing id column is still named as such, and missing times are refused.
    with pytest.raises(ValueError, match=r"`train` must have a column 'user'"):
        Popularity(window=0.3).fit(TIMED, user_id="user")
    with pytest.raises(ValueError, match=r"`train\['timestamp'\]` must hold no missing"):
        Popularity(window=0.3).fit(TIMED.assign(timestamp=[1.0, np.nan, *range(8)]))


@pytest.mark.parametrize(("neighbors", "shrinkage"), [(3, 0.0), (20, 2.0)])
def test_item_knn_matches_dense_reference(neighbors, shrinkage):
    dense, log = random_interactions(1)
    sims = cosine(dense.T, shrinkage)
    np.fill_diagonal(sims, 0)
    expected = dense @ top(sims, neighbors)
    got = ItemKNN(neighbors=neighbors, shrinkage=shrinkage).fit(log).score(np.arange(12))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("neighbors", "shrinkage"), [(2, 0.0), (50, 1.0)])
def test_user_knn_matches_dense_reference(neighbors, shrinkage):
    dense, log = random_interactions(2)
    sims = cosine(dense, shrinkage)
    np.fill_diagonal(sims, 0)
    expected = top(sims, neighbors) @ dense
    got = UserKNN(neighbors=neighbors, shrinkage=shrinkage).fit(log).score(np.arange(12))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_ease_matches_closed_form():
    dense, log = random_interactions(3)
    model = EASE(l2=5.0).fit(log)
    # B minimises ||X - XB||² + l2 ||B||² column by column with B_jj = 0.
    gram = dense.T @ dense + 5.0 * np.eye(9)
    for j in range(9):
        others = [i for i in range(9) if i != j]
        column = np.linalg.solve(gram[np.ix_(others, others)], (dense.T @ dense)[others, j])
        np.testing.assert_allclose(model.weights_[others, j], column, rtol=1e-4, atol=1e-5)
    assert np.all(np.diag(model.weights_) == 0)
    np.testing.assert_allclose(model.score(np.arange(12)), dense @ model.weights_, rtol=1e-5)


def rp3beta_reference(dense, alpha, beta, neighbors):
    """RP3beta written out densely: walk probabilities, powers, penalty, then pruning."""
    user_to_item = dense / dense.sum(axis=1, keepdims=True)
    item_to_user = dense.T / dense.T.sum(axis=1, keepdims=True)
    weights = np.zeros((dense.shape[1], dense.shape[1]))
    for i in range(dense.shape[1]):  # item -> user -> item, one path at a time
        for u in range(dense.shape[0]):
            for j in range(dense.shape[1]):
                if dense[u, i] and dense[u, j]:
                    weights[i, j] += item_to_user[i, u] ** alpha * user_to_item[u, j] ** alpha
    weights /= dense.sum(axis=0)[None, :] ** beta
    np.fill_diagonal(weights, 0)
    return top(weights, neighbors)


@pytest.mark.parametrize(("alpha", "beta", "neighbors"),
                         [(1.0, 0.0, 50), (0.6, 0.0, 50), (1.0, 0.7, 50), (1.3, 0.4, 3),
                          (0.0, 0.5, 50)])
def test_rp3beta_matches_dense_reference(alpha, beta, neighbors):
    dense, log = random_interactions(10)
    weights = rp3beta_reference(dense, alpha, beta, neighbors)
    unpruned = -np.sort(-rp3beta_reference(dense, alpha, beta, 50), axis=1)
    if neighbors < 8:  # no tie at the cut, so the kept neighbours are well defined
        assert np.all(unpruned[:, neighbors - 1] - unpruned[:, neighbors] > 1e-4)
    model = RP3beta(alpha=alpha, beta=beta, neighbors=neighbors).fit(log)
    np.testing.assert_allclose(model.similarity_.toarray(), weights, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score(np.arange(12)), dense @ weights, rtol=1e-5, atol=1e-6)
    # Each parameter matters here, so a model that ignored one would fail above.
    plain = rp3beta_reference(dense, 1.0, 0.0, 50)
    if (alpha, beta, neighbors) != (1.0, 0.0, 50):
        assert np.abs(plain - weights).max() > 1e-3


def test_rp3beta_plain_walk_is_a_transition_matrix():
    # alpha=1, beta=0, no pruning: the item -> user -> item walk; each row of W plus the
    # dropped return probability sums to one.
    dense, log = random_interactions(5)
    model = RP3beta(alpha=1.0, beta=0.0, neighbors=100).fit(log)
    returns = (dense / dense.sum(axis=0)) * (1 / dense.sum(axis=1))[:, None]
    row_sums = model.similarity_.toarray().sum(axis=1) + returns.sum(axis=0)
    np.testing.assert_allclose(row_sums, 1.0, rtol=1e-5)


def test_rp3beta_neighbors_keep_the_largest_weights():
    _, log = random_interactions(6)
    full = RP3beta(neighbors=100).fit(log).similarity_.toarray()
    pruned = RP3beta(neighbors=2).fit(log).similarity_.toarray()
    assert np.all((pruned > 0).sum(axis=1) <= 2)
    for row_full, row_pruned in zip(full, pruned, strict=True):
        kept = row_pruned > 0
        np.testing.assert_allclose(row_pruned[kept], row_full[kept], rtol=1e-6)
        assert row_full[~kept].max(initial=0) <= row_full[kept].min() + 1e-7


def test_string_ids_and_kind_mismatch():
    model = ItemKNN().fit({"user_id": ["u1", "u2"], "item_id": ["a", "b"]})
    assert model.score(["u1"]).shape == (1, 2)
    with pytest.raises(TypeError, match="`user_ids` must hold string ids"):
        model.score([1])


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: ItemKNN(neighbors=0), ValueError, "`neighbors` must be an integer >= 1"),
    (lambda: UserKNN(neighbors=2.5), TypeError, "`neighbors` must be an integer >= 1"),
    (lambda: ItemKNN(shrinkage=-1), ValueError, "`shrinkage` must be a finite number >= 0"),
    (lambda: EASE(l2=0), ValueError, "`l2` must be a finite number > 0"),
    (lambda: EASE(l2=float("inf")), ValueError, "`l2` must be a finite number > 0"),
    (lambda: RP3beta(alpha=-0.5), ValueError, "`alpha` must be a finite number >= 0"),
    (lambda: RP3beta(beta="0.5"), TypeError, "`beta` must be a finite number >= 0"),
    (lambda: RP3beta(neighbors=0), ValueError, "`neighbors` must be an integer >= 1"),
    (lambda: ImplicitALS(factors=0), ValueError, "`factors` must be an integer >= 1"),
    (lambda: ImplicitALS(alpha=0), ValueError, "`alpha` must be a finite number > 0"),
    (lambda: BPR(learning_rate=0), ValueError, "`learning_rate` must be a finite number > 0"),
    (lambda: BPR(seed=1.0), TypeError, "`seed` must be an integer >= 0"),
])
def test_bad_hyperparameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


# --------------------------------------------------------------- implicit (optional extra)

FACTORIZATIONS = [
    lambda seed=0: ImplicitALS(factors=2, seed=seed),
    lambda seed=0: BPR(factors=2, learning_rate=0.1, iterations=200, seed=seed),
]


def two_blocks():
    """Users 0-49 pick 5 of items 0-9, users 50-99 5 of items 10-19; item ids are strings
    whose sorted order interleaves the blocks, so a column mix-up shows."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for user in range(100):
        first = 0 if user < 50 else 10
        users += [user] * 5
        items += (rng.choice(10, size=5, replace=False) + first).tolist()
    names = np.array([f"item{(7 * i) % 20:02d}" for i in range(20)], dtype=object)
    return {"user_id": users, "item_id": names[items].tolist()}, names


@pytest.mark.parametrize("make", FACTORIZATIONS, ids=["ImplicitALS", "BPR"])
def test_factorization_recommends_from_the_users_own_block(make):
    pytest.importorskip("implicit")
    log, names = two_blocks()
    model = make().fit(log)
    block_of = {name: i // 10 for i, name in enumerate(names)}
    scores = model.score(np.arange(100))
    seen = {(u, i) for u, i in zip(log["user_id"], log["item_id"], strict=True)}
    for user, row in enumerate(scores):
        ranked = [model.item_ids[j] for j in np.argsort(-row, kind="stable")]
        unseen = [item for item in ranked if (user, item) not in seen]
        assert {block_of[item] for item in unseen[:3]} == {user // 50}


@pytest.mark.parametrize("make", FACTORIZATIONS, ids=["ImplicitALS", "BPR"])
def test_factorization_is_deterministic_with_a_seed(make):
    pytest.importorskip("implicit")
    log, _ = two_blocks()
    first = make(seed=3).fit(log)
    again = make(seed=3).fit(log)
    np.testing.assert_array_equal(again.score(np.arange(100)), first.score(np.arange(100)))
    np.testing.assert_array_equal(again.item_factors_, first.item_factors_)
    # The seed is used: another one starts elsewhere (ALS then converges to similar scores).
    other = make(seed=4).fit(log)
    assert np.abs(other.item_factors_ - first.item_factors_).max() > 1e-3


@pytest.mark.parametrize("make", FACTORIZATIONS, ids=["ImplicitALS", "BPR"])
def test_factorization_is_a_recommender(make):
    pytest.importorskip("implicit")
    train, _ = checkerboard()
    model = make()
    assert model.fit(train) is model and isinstance(model, Recommender)
    scores = model.score(np.array([3, 999]))
    assert scores.shape == (2, 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores[1], model.item_popularity_)


@pytest.mark.parametrize("cls", [ImplicitALS, BPR])
def test_factorization_without_implicit_says_how_to_install(cls, monkeypatch):
    monkeypatch.setitem(sys.modules, "implicit", None)  # makes `import implicit` fail
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[implicit\]"'):
        cls()


def test_fit_rejects_empty_and_missing_columns():
    with pytest.raises(ValueError, match="at least one row"):
        EASE().fit({"user_id": [], "item_id": []})
    with pytest.raises(ValueError, match="'item'"):
        EASE().fit({"user_id": [1], "item_id": [1]}, item_id="item")


def test_repr_shows_hyperparameters():
    assert repr(ItemKNN(neighbors=5, shrinkage=1.0)) == "ItemKNN(neighbors=5, shrinkage=1.0)"
    assert repr(EASE()) == "EASE(l2=500.0)"
    assert repr(RP3beta()) == "RP3beta(alpha=1.0, beta=0.5, neighbors=100)"


# ------------------------------------------------------------------------------ tuning

def timed_log(seed=0, n_users=30, n_items=20, per_user=6):
    rng = np.random.default_rng(seed)
    rows = [(user, item, int(rng.integers(1_000_000)))
            for user in range(n_users)
            for item in rng.choice(n_items, size=per_user, replace=False)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


PHANTOMS = np.arange(10_000, 10_050)  # never trained on, so never masked


def oracle(log, distance, *, minimum=None, open_minimum=False):
    """A fake model that knows the validation slice of ``log`` (computed here, by hand):
    it ranks each user's validation items right after about ``distance(x)`` phantom
    items, so the validation score falls strictly as ``distance(x)`` grows (by >= 1)."""
    _, validation = per_user_temporal_split(log, test_fraction=0.2)
    answers = validation.groupby("user_id")["item_id"].apply(set).to_dict()

    class Oracle:
        fitted_rows: ClassVar[list[int]] = []

        def __init__(self, *, x):
            if minimum is not None and (x <= minimum if open_minimum else x < minimum):
                raise ValueError("x is too small")
            self.x = x

        def fit(self, train, *, user_id="user_id", item_id="item_id"):
            Oracle.fitted_rows.append(len(train[user_id]))
            self.item_ids = np.concatenate([np.unique(train[item_id]), PHANTOMS])
            return self

        def score(self, user_ids):
            scores = np.full((len(user_ids), len(self.item_ids)), -1000.0)
            scores[:, -len(PHANTOMS):] = -np.arange(len(PHANTOMS)) - 0.5
            column = {item: j for j, item in enumerate(self.item_ids)}
            for row, user in enumerate(user_ids):
                for item in answers.get(user, ()):
                    if item in column:
                        scores[row, column[item]] = -distance(self.x)
            return scores

    return Oracle


def test_tune_extends_an_edge_until_the_best_is_interior():
    log = timed_log()
    model_class = oracle(log, lambda x: abs(x - 5))
    model, result = tune(model_class, log, grid={"x": [1, 2, 3]})
    assert result.grid == {"x": [1, 2, 3, 4, 5, 6]}
    assert result.best_params == {"x": 5} and model.x == 5
    assert result.at_edge == ()
    assert result.scores["x"].tolist() == [1, 2, 3, 4, 5, 6]
    assert result.scores["round"].tolist() == [0, 0, 0, 1, 2, 3]
    assert result.scores["ndcg@10"].idxmax() == 4
    # Every search fit saw only the earlier part of train; the last fit is on all of it.
    inner, _ = per_user_temporal_split(log, test_fraction=0.2)
    assert model_class.fitted_rows == [len(inner)] * 6 + [len(log)]


def test_tune_reports_an_edge_it_could_not_leave():
    log = timed_log()
    far = oracle(log, lambda x: abs(x - 9))
    _, result = tune(far, log, grid={"x": [1, 2, 3]}, max_extensions=3)
    assert result.best_params == {"x": 6} and result.at_edge == ("x",)
    _, result = tune(far, log, grid={"x": [1, 2, 3]}, extend_edges=False)
    assert result.best_params == {"x": 3} and result.at_edge == ("x",)
    assert len(result.scores) == 3


def test_tune_extends_a_geometric_grid_by_its_ratio():
    log = timed_log()
    _, result = tune(oracle(log, lambda x: abs(np.log10(x) - 1)), log,
                     grid={"x": [0.001, 0.01, 0.1]})
    np.testing.assert_allclose(result.grid["x"], [0.001, 0.01, 0.1, 1.0, 10.0, 100.0])
    assert result.best_params["x"] == pytest.approx(10.0) and result.at_edge == ()
    # A leading zero (an "off" value) does not make the grid arithmetic upwards.
    _, result = tune(oracle(log, lambda x: abs(np.log10(x + 1) - 3), minimum=0.0), log,
                     grid={"x": [0.0, 10.0, 100.0]})
    np.testing.assert_allclose(result.grid["x"], [0.0, 10.0, 100.0, 1000.0, 10000.0])
    assert result.best_params["x"] == pytest.approx(1000.0)


@pytest.mark.parametrize(("grid", "minimum", "expected"), [
    ([4, 8, 16], 1, [1, 2, 4, 8, 16]),  # integers, halving: 2, then 1; 0 is invalid
    ([2.0, 4.0, 6.0], 0.0, [0.0, 2.0, 4.0, 6.0]),  # steps of 2 down to 0; -2 is invalid
])
def test_tune_never_goes_below_a_parameters_minimum(grid, minimum, expected):
    log = timed_log()
    _, result = tune(oracle(log, abs, minimum=minimum), log, grid={"x": grid})
    assert result.grid == {"x": expected}
    assert result.best_params == {"x": expected[0]} and result.at_edge == ()


def test_tune_tries_half_the_edge_when_a_step_would_reach_an_open_minimum():
    log = timed_log()
    _, result = tune(oracle(log, abs, minimum=0.0, open_minimum=True), log,
                     grid={"x": [3.0, 6.0, 9.0]}, max_extensions=1)
    assert result.grid == {"x": [1.5, 3.0, 6.0, 9.0]}


def test_tune_scores_on_a_validation_slice_of_train_and_refits_on_all_of_it():
    log = timed_log(1)
    model, result = tune(EASE, log, grid={"l2": [1.0, 10.0, 100.0]}, extend_edges=False)
    inner, validation = per_user_temporal_split(log, test_fraction=0.2)  # by hand
    for row in result.scores.to_dict("records"):
        expected = evaluate(EASE(l2=row["l2"]).fit(inner), validation, train=inner, k=10,
                            metrics=["ndcg"])["EASE"]["ndcg@10"]
        assert row["ndcg@10"] == pytest.approx(expected)
    assert result.best_score == result.scores["ndcg@10"].max()
    refit = EASE(**result.best_params).fit(log)
    assert model.interactions_.nnz == len(log)
    np.testing.assert_allclose(model.score(np.arange(30)), refit.score(np.arange(30)))


def test_tune_with_nothing_to_tune_fits_once():
    log = timed_log()
    model, result = tune(Popularity, log, grid={})
    assert isinstance(model, Popularity) and result.best_params == {}
    assert result.scores.columns.tolist() == ["ndcg@10", "round"] and len(result.scores) == 1


def drifting_log(seed=0, n_users=40, per_user=8):
    """Items 0-4 are taken before time 700, items 5-9 after it; items 10-19 any time."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for time in np.sort(rng.choice(1000, size=per_user, replace=False)):
            trend = rng.integers(5) + (5 if time >= 700 else 0)
            item = trend if rng.random() < 0.8 else rng.integers(10, 20)
            rows.append((user, int(item), int(time)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "time"])
    return frame.drop_duplicates(["user_id", "item_id"])


def test_tune_chooses_popularitys_window_with_the_timestamp():
    log = drifting_log()
    model, result = tune(Popularity, log, timestamp="time", extend_edges=False)
    assert result.grid == {"window": [1.0, 0.3, 0.1, 0.03]}
    inner, validation = per_user_temporal_split(log, test_fraction=0.2, timestamp="time")
    for row in result.scores.to_dict("records"):  # each window scored by hand
        fitted = Popularity(window=row["window"]).fit(inner, timestamp="time")
        expected = evaluate(fitted, validation, train=inner, k=10,
                            metrics=["ndcg"])["Popularity"]["ndcg@10"]
        assert row["ndcg@10"] == pytest.approx(expected)
    # On this log the latest events predict the latest interactions: a window wins.
    assert result.best_params["window"] < 1.0
    assert result.best_score > result.scores["ndcg@10"].iloc[0]
    assert model.window == result.best_params["window"]
    refit = Popularity(window=model.window).fit(log, timestamp="time")
    np.testing.assert_array_equal(model.score([0]), refit.score([0]))


@pytest.mark.parametrize("cls", [Popularity, ItemKNN, UserKNN, EASE, RP3beta, ImplicitALS, BPR])
def test_default_grids_hold_valid_values(cls):
    if cls in (ImplicitALS, BPR):
        pytest.importorskip("implicit")
    grid = default_grid(cls)
    for name, values in grid.items():
        assert len(values) >= 3
        for value in values:
            cls(**{name: value})
    grid.clear()  # a copy: the next call is unchanged
    assert default_grid(cls) != {}
    assert default_grid(type("Subclass", (cls,), {})) == default_grid(cls)


def test_default_grid_of_an_unknown_class():
    with pytest.raises(ValueError, match="`model_class` must be a baseline with a default grid"):
        default_grid(dict)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"grid": {"neighbours": [5]}}, ValueError, "Did you mean 'neighbors'"),
    ({"grid": {"neighbors": []}}, ValueError, r"`grid\['neighbors'\]` must be a non-empty"),
    ({"grid": [5]}, TypeError, "`grid` must be a dict"),
    ({"metric": "ndcg"}, ValueError, "`metric` must be a ranking metric at a cut-off"),
    ({"metric": "ndcg@0"}, ValueError, "`metric` must be a ranking metric at a cut-off"),
    ({"metric": "coverage@10"}, ValueError, "`metric` must be one of"),
    ({"validation_fraction": 1.5}, ValueError, "`validation_fraction` must be"),
    ({"extend_edges": "yes"}, TypeError, "`extend_edges` must be True or False"),
    ({"max_extensions": -1}, ValueError, "`max_extensions` must be an integer >= 0"),
])
def test_tune_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        tune(ItemKNN, timed_log(), **kwargs)


def test_a_diverged_factorisation_names_the_setting_and_tune_skips_it():
    pytest.importorskip("implicit")
    rng = np.random.default_rng(0)
    log = {"user_id": rng.integers(0, 50, 2000), "item_id": rng.integers(0, 80, 2000),
           "timestamp": np.arange(2000)}
    with pytest.raises(ValueError, match=r"`learning_rate` must keep BPR's factors finite "
                       r"on this log\. Received: learning_rate=1000\.0\. .*lower it"):
        BPR(learning_rate=1000.0, regularization=0.0, iterations=20).fit(log)
    model, result = tune(BPR, log, grid={"learning_rate": [0.05, 1000.0],
                                         "regularization": [0.0], "iterations": [20]},
                         extend_edges=False)
    scores = result.scores.set_index("learning_rate")["ndcg@10"]
    assert scores[1000.0] == -np.inf and np.isfinite(scores[0.05])
    assert result.best_params["learning_rate"] == 0.05 and model.learning_rate == 0.05
