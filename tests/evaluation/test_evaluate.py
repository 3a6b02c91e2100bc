"""evaluate() against a per-user reference, its edge cases and bad input; Report."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrs_kit.baselines import Popularity
from tfrs_kit.evaluation import Recommender, Report, evaluate

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


class TableScores:
    """A Recommender with fixed scores per user (ties included)."""

    def __init__(self, item_ids, users, scores):
        self.item_ids = np.asarray(item_ids)
        self._rows = {u: i for i, u in enumerate(users)}
        self._scores = np.asarray(scores, dtype=np.float64)
        self.calls = 0

    def score(self, user_ids):
        self.calls += 1
        return self._scores[[self._rows[u] for u in user_ids]].copy()


def reference(model, train, test, k, item_vectors):
    """Everything evaluate() reports, one user at a time with a stable argsort."""
    catalogue = list(model.item_ids)
    users = sorted(set(test["user_id"]))
    train_pairs = set(zip(train["user_id"], train["item_id"], strict=True))
    train_users = len(set(train["user_id"]))
    pop = {i: len({u for u, j in train_pairs if j == i}) for i in catalogue}
    rows = {name: [] for name in ("recall", "precision", "ndcg", "map", "mrr", "hit_rate",
                                  "novelty", "popularity", "ild")}
    recommended = set()
    correct = 0
    for user in users:
        scores = model.score(np.array([user]))[0].copy()
        for c, item in enumerate(catalogue):
            if (user, item) in train_pairs:
                scores[c] = -np.inf
        order = [c for c in np.argsort(-scores, kind="stable")[:k] if scores[c] > -np.inf]
        ranked = [catalogue[c] for c in order]
        relevant = {i for u, i in zip(test["user_id"], test["item_id"], strict=True) if u == user}
        hits = [i in relevant for i in ranked]
        m = min(k, len(relevant))
        rows["recall"].append(sum(hits) / m)
        rows["precision"].append(sum(hits) / k)
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        rows["ndcg"].append(dcg / sum(1 / math.log2(r + 2) for r in range(m)))
        ap = sum(sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h)
        rows["map"].append(ap / m)
        rows["mrr"].append(next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0))
        rows["hit_rate"].append(float(any(hits)))
        if ranked:  # users without any unseen item are left out of these means
            rows["novelty"].append(np.mean([-math.log2(max(pop[i], 1) / train_users)
                                            for i in ranked]))
            rows["popularity"].append(np.mean([pop[i] for i in ranked]))
        sets = [set(np.flatnonzero(item_vectors[catalogue.index(i)])) for i in ranked]
        pairs = [(a, b) for a in range(len(sets)) for b in range(a + 1, len(sets))]
        if pairs:
            rows["ild"].append(np.mean([
                1 - len(sets[a] & sets[b]) / len(sets[a] | sets[b]) if sets[a] | sets[b] else 0
                for a, b in pairs]))
        recommended.update(ranked)
        raw = model.score(np.array([user]))[0]
        for u, i in zip(test["user_id"], test["item_id"], strict=True):
            if u == user and i in catalogue:
                correct += (raw > raw[catalogue.index(i)]).sum() < k
    out = {f"{name}@{k}": float(np.mean(v)) for name, v in rows.items() if v}
    out[f"coverage@{k}"] = len(recommended) / len(catalogue)
    out[f"top_k_accuracy@{k}"] = correct / len(test["user_id"])
    return out


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_items, n_users = int(rng.integers(3, 12)), int(rng.integers(1, 7))
    users = np.arange(n_users) * 10  # ids are not positions
    items = np.arange(n_items) + 100
    n_train, n_test = int(rng.integers(1, 30)), int(rng.integers(1, 15))
    train = {"user_id": rng.choice(users, n_train), "item_id": rng.choice(items, n_train)}
    test = {"user_id": rng.choice(users, n_test),
            "item_id": rng.choice(np.arange(n_items + 2) + 100, n_test)}  # some unknown items
    scores = rng.integers(0, 3, size=(n_users, n_items)).astype(float)  # ties
    vectors = (rng.random((n_items, 3)) < 0.5).astype(float)
    k = int(rng.integers(1, n_items + 1))
    return TableScores(items, users, scores), train, test, k, vectors


@SETTINGS
@given(problem=problems(), batch_size=st.sampled_from([None, 1, 2]))
def test_evaluate_matches_per_user_reference(problem, batch_size):
    model, train, test, k, vectors = problem
    features = {"item_id": model.item_ids, "genres": list(vectors.astype(bool))}
    features["genres"] = [np.flatnonzero(v) for v in vectors]
    report = evaluate(model, test, train=train, k=k, batch_size=batch_size,
                      metrics=None, item_features=features, diversity_feature="genres")
    full = evaluate(model, test, train=train, k=k, metrics=["top_k_accuracy", "coverage"])
    got = {**report["TableScores"], **full["TableScores"]}
    expected = reference(model, train, test, k, vectors)
    for name in ("ild", "novelty", "popularity"):
        expected.setdefault(f"{name}@{k}", float("nan"))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key


def test_unknown_test_items_stay_relevant_but_cannot_be_hit():
    train = {"user_id": [1, 2], "item_id": [1, 2]}
    model = Popularity().fit(train)
    test = {"user_id": [1, 1], "item_id": [2, 99]}  # 99 is not in the catalogue
    report = evaluate(model, test, train=train, k=1, metrics=["recall", "hit_rate"])
    assert report["Popularity"].get("recall@1") == 1.0  # min(K=1, 2 relevant) = 1
    report = evaluate(model, test, train=train, k=2, metrics=["recall"])
    assert report["Popularity"]["recall@2"] == pytest.approx(0.5)  # 99 can never be hit


def test_unknown_test_users_are_scored_without_masking():
    train = {"user_id": [1, 2, 3], "item_id": [1, 1, 2]}
    report = evaluate(Popularity().fit(train), {"user_id": [42], "item_id": [1]}, train=train,
                      k=1, metrics=["recall"])
    assert report.to_dict() == {"Popularity": {"recall@1": 1.0}}


def test_short_lists_when_too_few_unseen_items():
    train = {"user_id": [1, 1, 2], "item_id": [1, 2, 3]}
    report = evaluate(Popularity().fit(train), {"user_id": [1], "item_id": [3]}, train=train,
                      k=3, metrics=["recall", "precision", "coverage"])
    assert report["Popularity"]["recall@3"] == 1.0
    assert report["Popularity"]["precision@3"] == pytest.approx(1 / 3)
    assert report["Popularity"]["coverage@3"] == pytest.approx(1 / 3)


def test_as_recommender_hook_and_named_models():
    seen = {}

    class TwoTowerLike:
        def as_recommender(self, train, *, user_id, item_id):
            seen.update(train=train, user_id=user_id, item_id=item_id)
            return Popularity().fit(train, user_id=user_id, item_id=item_id)

    train = pd.DataFrame({"u": [1, 2, 2], "i": ["a", "b", "a"]})
    report = evaluate({"two_tower": TwoTowerLike(), "pop": Popularity().fit(train, user_id="u",
                                                                            item_id="i")},
                      pd.DataFrame({"u": [1], "i": ["b"]}), train=train, k=1,
                      user_id="u", item_id="i", metrics=["ndcg"])
    assert report.models == ("two_tower", "pop")
    assert seen["train"] is train and (seen["user_id"], seen["item_id"]) == ("u", "i")
    assert report["two_tower"] == report["pop"]


def test_recommender_protocol_is_runtime_checkable():
    assert isinstance(Popularity().fit({"user_id": [1], "item_id": [2]}), Recommender)
    assert not isinstance(object(), Recommender)


def test_diversity_by_embedding_and_single_category():
    train = {"user_id": [1, 2, 3], "item_id": [1, 2, 2]}
    model = Popularity().fit(train)
    embeddings = {"item_id": [1, 2], "vec": [np.array([1.0, 0.0]), np.array([0.0, 1.0])]}
    report = evaluate(model, {"user_id": [9], "item_id": [1]}, train=train, k=2,
                      metrics=["ild"], item_features=embeddings)
    assert report["Popularity"]["ild@2"] == pytest.approx(1.0)
    categories = {"item_id": [1, 2], "kind": ["x", "x"]}
    report = evaluate(model, {"user_id": [9], "item_id": [1]}, train=train, k=2,
                      item_features=categories)
    assert report["Popularity"]["ild@2"] == 0.0


def test_evaluates_movielens_sized_data_quickly_enough_to_run_in_tests():
    rng = np.random.default_rng(0)
    train = {"user_id": rng.integers(0, 900, 80_000), "item_id": rng.integers(0, 1600, 80_000)}
    test = {"user_id": rng.integers(0, 900, 20_000), "item_id": rng.integers(0, 1600, 20_000)}
    popularity = Popularity().fit(train)
    report = evaluate(popularity, test, train=train, k=(10, 100))
    # The value, not just its range: a dense NumPy reference (train items masked, ties to
    # the lower column, recall over min(k, relevant)).
    users = np.unique(test["user_id"])
    scores = popularity.score(users).astype(np.float64)
    columns = {item: j for j, item in enumerate(popularity.item_ids)}
    row = {user: i for i, user in enumerate(users)}
    seen = [(row[u], columns[i]) for u, i in zip(train["user_id"], train["item_id"], strict=True)
            if u in row and i in columns]
    scores[tuple(np.array(seen).T)] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    relevant = [set() for _ in users]
    for u, i in zip(test["user_id"], test["item_id"], strict=True):
        relevant[row[u]].add(i)
    ids = np.asarray(popularity.item_ids)
    recall = np.mean([len(set(ids[t]) & r) / min(100, len(r))
                      for t, r in zip(top, relevant, strict=True)])
    assert report["Popularity"]["recall@100"] == pytest.approx(recall, abs=1e-12)


# ---------------------------------------------------------------- the pieces, alone


def _tiny_problem():
    from tfrs_kit.evaluation._interactions import Interactions

    train = {"user_id": [1, 1, 2], "item_id": [10, 20, 30]}
    test = {"user_id": [1, 2, 2], "item_id": [30, 10, 40]}  # 40: not in the catalogue
    data = Interactions.read(train, test, "user_id", "item_id")
    model = TableScores([10, 20, 30], [1, 2], [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    return model, data


def test_rank_masks_training_items_and_marks_hits_and_empty_slots():
    from tfrs_kit.evaluation._evaluate import _rank

    model, data = _tiny_problem()
    ranked = _rank(model, "m", data, pd.Index(model.item_ids), (1, 3), accuracy=True,
                   batch_size=1, verbose=False)
    # User 1 has seen 10 and 20, user 2 has seen 30; -1 is an empty slot.
    assert ranked.positions.tolist() == [[2, -1, -1], [1, 0, -1]]
    assert ranked.hits.tolist() == [[True, False, False], [False, True, False]]
    # Unmasked scores: 30 is user 1's third best, 10 user 2's third best; 40 is unknown.
    assert ranked.accuracy_hits == {1: 0, 3: 2}
    assert model.calls == 2  # one call per batch of one user


def test_metric_totals_from_a_ranking_known_by_hand():
    from tfrs_kit.evaluation._evaluate import _metric_totals, _Ranked

    _, data = _tiny_problem()
    ranked = _Ranked(positions=np.array([[2, -1, -1], [1, 0, -1]]),
                     hits=np.array([[True, False, False], [False, True, False]]),
                     accuracy_hits={1: 0, 3: 2})
    totals = _metric_totals(ranked, data, pd.Index([10, 20, 30]), (1, 3),
                            ("recall", "precision", "coverage", "popularity", "top_k_accuracy"),
                            None)
    assert totals == pytest.approx({
        "recall@1": (1 + 0) / 2, "precision@1": (1 + 0) / 2, "coverage@1": 2 / 3,
        "popularity@1": 1.0, "top_k_accuracy@1": 0.0,
        "recall@3": (1 / 1 + 1 / 2) / 2, "precision@3": (1 / 3 + 1 / 3) / 2,
        "coverage@3": 1.0, "popularity@3": 1.0, "top_k_accuracy@3": 2 / 3,
    })


# --------------------------------------------------------------------------- bad input

TRAIN = {"user_id": [1, 1, 2], "item_id": [1, 2, 3]}
TEST = {"user_id": [1, 2], "item_id": [3, 1]}


@pytest.mark.parametrize(("k", "error"), [
    (0, ValueError), (-5, ValueError), ((10, 0), ValueError), ((), ValueError),
    (2.5, TypeError), ((10.0,), TypeError), ("10", TypeError), (True, TypeError),
    (None, TypeError),
])
def test_bad_k(k, error):
    with pytest.raises(error, match="`k` must be an integer >= 1"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=k)


@pytest.mark.parametrize(("batch_size", "error"), [(0, ValueError), (2.0, TypeError),
                                                   (True, TypeError)])
def test_bad_batch_size(batch_size, error):
    with pytest.raises(error, match="`batch_size` must be an integer >= 1 or None"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=1, batch_size=batch_size)


def test_bad_metrics_type():
    with pytest.raises(TypeError, match="`metrics` must be a metric name or a sequence"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=1, metrics=3)


def test_unfitted_baseline():
    from tfrs_kit._errors import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        evaluate(Popularity(), TEST, train=TRAIN, k=1)


def test_k_larger_than_catalogue():
    with pytest.raises(ValueError, match="catalogue size of model 'Popularity' \\(3\\)"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=(1, 4))


def test_mismatched_id_types():
    with pytest.raises(TypeError, match="item ids of the same kind"):
        evaluate(Popularity().fit(TRAIN), {"user_id": [1], "item_id": ["3"]}, train=TRAIN, k=1)
    with pytest.raises(TypeError, match="user ids of the same kind"):
        evaluate(Popularity().fit(TRAIN), {"user_id": ["1"], "item_id": [3]}, train=TRAIN, k=1)
    str_model = TableScores(["1", "2", "3"], [1, 2], np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"`test\['item_id'\]` must hold item ids of the same "
                       r"kind as models\['TableScores'\].item_ids \(string ids\)\. "
                       r"Received: test\['item_id'\]=number ids such as 3\."):
        evaluate(str_model, TEST, train=TRAIN, k=1)


def test_ids_that_mix_numbers_and_strings_anywhere_name_the_column():
    late_string = np.array([1] * 50 + ["x"], dtype=object)  # only the last value differs
    train = {"user_id": late_string, "item_id": np.arange(51)}
    with pytest.raises(TypeError, match=r"`train\['user_id'\]` must hold user ids of one "
                       r"kind \(all numbers or all strings\)\. Received: .*1 and 'x'"):
        evaluate(Popularity().fit(TRAIN), TEST, train=train, k=1)
    test = {"user_id": [1, 2], "item_id": np.array([3, "1"], dtype=object)}
    with pytest.raises(TypeError, match=r"`test\['item_id'\]` must hold item ids of one kind"):
        evaluate(Popularity().fit(TRAIN), test, train=TRAIN, k=1)


def test_empty_test_set():
    with pytest.raises(ValueError, match="at least one row"):
        evaluate(Popularity().fit(TRAIN), {"user_id": [], "item_id": []}, train=TRAIN, k=1)


def test_unknown_metric_suggests_a_name():
    with pytest.raises(ValueError, match="Did you mean 'recall'"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=1, metrics=["recal"])


def test_ild_needs_item_features():
    with pytest.raises(ValueError, match="`item_features` must be given"):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=2, metrics=["ild"])


def test_bad_scores_and_bad_models():
    with pytest.raises(ValueError, match="shape"):
        evaluate(TableScores([1, 2, 3], [1, 2], np.zeros((2, 2))), TEST, train=TRAIN, k=1)
    with pytest.raises(ValueError, match="no NaN"):
        evaluate(TableScores([1, 2, 3], [1, 2], np.full((2, 3), np.nan)), TEST, train=TRAIN, k=1)
    with pytest.raises(TypeError, match="be a Recommender"):
        evaluate(object(), TEST, train=TRAIN, k=1)
    with pytest.raises(ValueError, match="distinct item ids"):
        evaluate(TableScores([1, 1, 3], [1, 2], np.zeros((2, 3))), TEST, train=TRAIN, k=1)


# ------------------------------------------------------------------------------ Report


def test_report_formats_and_is_immutable():
    report = Report({"pop": {"recall@10": 0.1, "recall@100": 0.3},
                     "ease": {"recall@10": 0.18, "fit_s": 1.5}})
    assert report.to_text().splitlines() == [
        "metric      pop     ease",
        "recall@10   0.1000  0.1800",
        "recall@100  0.3000  -",
        "fit_s       -       1.5000",
    ]
    assert str(report) == report.to_text()
    assert report.to_markdown().splitlines()[1] == "|---|---:|---:|"
    copy = report.to_dict()
    copy["pop"]["recall@10"] = 1.0
    assert report["pop"]["recall@10"] == 0.1
    with pytest.raises(AttributeError):
        report.models = ()
    with pytest.raises(TypeError):
        report["pop"]["recall@10"] = 2.0
    with pytest.raises(ValueError, match="Did you mean 'pop'"):
        report["popp"]
    with pytest.raises(ValueError, match="`precision` must be an integer >= 0"):
        report.to_text(precision=-1)
    with pytest.raises(TypeError, match="`precision` must be an integer >= 0"):
        report.to_markdown(precision=2.0)


def test_report_plot(tmp_path):
    pytest.importorskip("matplotlib")
    report = Report({"pop": {"recall@10": 0.1, "recall@100": 0.3, "ndcg@10": 0.1}})
    path = report.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0 and path.endswith("curves.png")


def test_report_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[plot\]"'):
        Report({"pop": {"recall@10": 0.1}}).plot(tmp_path / "x.png")


@pytest.mark.parametrize(("verbose", "error"), [
    (0, TypeError), (1, TypeError), (None, TypeError), ("yes", ValueError),
])
def test_bad_verbose(verbose, error):
    with pytest.raises(error, match=r"`verbose` must be 'auto', True or False\. Received: "):
        evaluate(Popularity().fit(TRAIN), TEST, train=TRAIN, k=1, verbose=verbose)


def test_a_single_wrapped_model_is_reported_under_the_models_name_not_a_private_class():
    import tfrs_kit as tk

    log = tk.datasets.synthetic(600, num_users=40, num_items=30, seed=0).interactions
    vocabs = tk.VocabularyBuilder().fit(log, features=["user_id", "item_id"], verbose=False)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    train, test = tk.evaluation.per_user_temporal_split(log)
    for wrapped in (model, model.as_recommender(train)):
        report = tk.evaluate(wrapped, test, train=train, k=5, metrics=["recall"])
        assert report.models == ("TwoTowerRetrieval",)
