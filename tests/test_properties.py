"""Property-based tests (Hypothesis) of the invariants users rely on, against plain references.

Example counts are small (CPU is scarce); each property still draws ids with unicode, very
long strings and negative integers, catalogues of varying size, exclusions and k.
"""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfrs_kit as tk
from tfrs_kit import evaluation

FEW = settings(max_examples=8, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MANY = settings(max_examples=60, deadline=None, derandomize=True)

# Ids as users write them: unicode, very long, look-alikes ("1" vs 1 never mix in one column).
TEXT_IDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1,
                   max_size=300)
INT_IDS = st.integers(min_value=-(2**62), max_value=2**62).filter(lambda i: i != -1)


def _id_lists(min_size=1, max_size=40):
    return st.one_of(st.lists(TEXT_IDS, min_size=min_size, max_size=max_size, unique=True),
                     st.lists(INT_IDS, min_size=min_size, max_size=max_size, unique=True))


# --- vocabularies ---------------------------------------------------------------------


@MANY
@given(data=st.data())
def test_vocabularies_round_trip_and_map_unknowns_to_oov(data, tmp_path_factory):
    tokens = data.draw(_id_lists(), label="tokens")
    repeats = data.draw(st.lists(st.integers(1, 4), min_size=len(tokens),
                                 max_size=len(tokens)), label="repeats")
    column = [t for t, r in zip(tokens, repeats, strict=True) for _ in range(r)]
    values = np.array(column, dtype=object if isinstance(tokens[0], str) else np.int64)
    vocab = tk.VocabularyBuilder().fit({"id": values})["id"]
    # Reference: tokens by decreasing count, ties by token.
    expected = sorted(tokens, key=lambda t: (-repeats[tokens.index(t)], t))
    assert list(vocab.tokens) == expected
    assert list(vocab.counts) == [repeats[tokens.index(t)] for t in expected]
    assert vocab.index(expected).tolist() == list(range(1, len(expected) + 1))
    # A value of the column's kind that is no token: longer than all, or larger than all.
    unknown = ("".join(tokens) + "!" if isinstance(tokens[0], str)
               else max(abs(t) for t in tokens) + 1)
    assert vocab.index([unknown]).tolist() == [0]
    path = tmp_path_factory.mktemp("vocab") / "v.json"
    tk.Vocabularies([vocab]).save(path)
    assert tk.Vocabularies.load(path) == tk.Vocabularies([vocab])


# --- metrics --------------------------------------------------------------------------


def _reference_metrics(ranked, relevant, k):
    """Per-user metrics, one loop per user, by their textbook definitions."""
    out = {name: [] for name in ("recall", "precision", "ndcg", "map", "mrr", "hit_rate")}
    for row, wanted in zip(ranked, relevant, strict=True):
        wanted = set(wanted)
        hits = [item in wanted for item in row[:k]]
        ideal = min(k, len(wanted))
        out["recall"].append(sum(hits) / ideal)
        out["precision"].append(sum(hits) / k)
        dcg = sum(1 / np.log2(i + 2) for i, h in enumerate(hits) if h)
        out["ndcg"].append(dcg / sum(1 / np.log2(i + 2) for i in range(ideal)))
        precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
        out["map"].append(sum(precisions) / ideal)
        out["mrr"].append(1 / (hits.index(True) + 1) if any(hits) else 0.0)
        out["hit_rate"].append(float(any(hits)))
    return {name: float(np.mean(values)) for name, values in out.items()}


@MANY
@given(data=st.data())
def test_ranking_metrics_equal_a_reference_and_stay_in_0_1(data):
    n_items = data.draw(st.integers(1, 12), label="items")
    length = data.draw(st.integers(1, n_items), label="list length")
    users = data.draw(st.integers(1, 6), label="users")
    ranked = [data.draw(st.permutations(range(n_items)))[:length] for _ in range(users)]
    relevant = [data.draw(st.sets(st.integers(0, n_items + 3), min_size=1, max_size=6))
                for _ in range(users)]
    k = data.draw(st.integers(1, length), label="k")
    expected = _reference_metrics(ranked, relevant, k)
    functions = {"recall": evaluation.recall_at_k, "precision": evaluation.precision_at_k,
                 "ndcg": evaluation.ndcg_at_k, "map": evaluation.average_precision_at_k,
                 "mrr": evaluation.reciprocal_rank_at_k, "hit_rate": evaluation.hit_rate_at_k}
    for name, function in functions.items():
        value = function(np.array(ranked), relevant, k=k)
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(expected[name], abs=1e-12), name


class _FixedScores:
    """A recommender with given scores: evaluate must rank exactly by them."""

    def __init__(self, item_ids, scores):
        self.item_ids = np.asarray(item_ids)
        self._scores = scores

    def score(self, user_ids):
        return np.stack([self._scores[u] for u in user_ids]).astype(np.float64)


@MANY
@given(data=st.data())
def test_evaluate_equals_a_brute_force_reference(data):
    n_items, n_users = data.draw(st.integers(2, 10)), data.draw(st.integers(1, 5))
    items = [f"i{j}" for j in range(n_items)]
    users = [f"u{j}" for j in range(n_users)]
    pairs = st.tuples(st.sampled_from(users), st.sampled_from(items))
    train = data.draw(st.lists(pairs, min_size=1, max_size=15), label="train")
    test = data.draw(st.lists(pairs, min_size=1, max_size=10), label="test")
    scores = {u: np.array(data.draw(st.lists(st.floats(-5, 5), min_size=n_items,
                                             max_size=n_items, unique=True)))
              for u in users}
    k = data.draw(st.integers(1, n_items))
    report = tk.evaluate(_FixedScores(items, scores), {"user_id": [u for u, _ in test],
                                                       "item_id": [i for _, i in test]},
                         train={"user_id": [u for u, _ in train],
                                "item_id": [i for _, i in train]}, k=k)
    got = report.to_dict()[next(iter(report.to_dict()))]
    # Reference: each test user's unseen items by score, the train items left out.
    test_users = sorted({u for u, _ in test})
    ranked, relevant = [], []
    for user in test_users:
        seen = {i for u, i in train if u == user}
        order = [items[j] for j in np.argsort(-scores[user], kind="stable")
                 if items[j] not in seen]
        ranked.append(order[:k] + [None] * (k - len(order[:k])))
        relevant.append({i for u, i in test if u == user})
    expected = _reference_metrics(ranked, relevant, k)
    for name in expected:
        assert 0.0 <= got[f"{name}@{k}"] <= 1.0
        assert got[f"{name}@{k}"] == pytest.approx(expected[name], abs=1e-9), name


# --- the index ------------------------------------------------------------------------


def _index_case(ids, backend="brute_force", k_max=None):
    kind = object if isinstance(ids[0], str) else np.int64
    ids = np.array(ids, dtype=kind)
    users = np.array(["a", "b", "c"], dtype=object)
    vocabs = (tk.VocabularyBuilder().fit({"user_id": users})
              | tk.VocabularyBuilder().fit({"item_id": ids}))
    tf.keras.utils.set_random_seed(0)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=6),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=6))
    index = tk.IndexBuilder(k_max=k_max or len(ids), backend=backend).build(
        model, {"item_id": ids})
    scores = (model.query_embeddings({"user_id": users}, verbose=False).astype(np.float64)
              @ model.candidate_embeddings({"item_id": ids}, verbose=False).T)
    return index, users, ids, scores


def _check_against_numpy(top, ids, scores, exclude, k):
    pad = "" if ids.dtype == object else -1
    for row in range(len(scores)):
        allowed = [j for j in range(len(ids)) if ids[j] not in set(exclude[row])]
        order = sorted(allowed, key=lambda j: -scores[row, j])[:k]
        expected_scores = [scores[row, j] for j in order] + [-np.inf] * (k - len(order))
        np.testing.assert_allclose(top.scores[row], expected_scores, rtol=1e-4, atol=1e-5)
        for slot in range(k):
            if slot >= len(order):
                assert top.ids[row, slot] == pad  # the documented padding, never a real id
                continue
            got = top.ids[row, slot]
            assert got not in set(exclude[row])
            position = int(np.flatnonzero(ids == got)[0])  # any id with this score (ties)
            assert scores[row, position] == pytest.approx(expected_scores[slot], rel=1e-4,
                                                          abs=1e-5)


@FEW
@given(ids=_id_lists(min_size=1, max_size=25), data=st.data())
def test_recommend_equals_an_exact_numpy_top_k_with_exclusions(ids, data):
    index, users, ids_array, scores = _index_case(ids)
    k = data.draw(st.integers(1, len(ids)), label="k")
    exclude = [data.draw(st.lists(st.sampled_from(list(ids)), max_size=len(ids)), label="exclude")
               for _ in users]
    top = index.recommend({"user_id": users}, k=k, exclude=exclude)
    _check_against_numpy(top, ids_array, scores, exclude, k)


@settings(max_examples=3, deadline=None, derandomize=True)
@given(ids=_id_lists(min_size=2, max_size=12), data=st.data())
def test_save_then_load_answers_the_same(ids, data, tmp_path_factory):
    index, users, _, _ = _index_case(ids)
    k = data.draw(st.integers(1, len(ids)), label="k")
    exclude = [data.draw(st.lists(st.sampled_from(list(ids)), max_size=3)) for _ in users]
    folder = tmp_path_factory.mktemp("index") / "index"
    index.save(folder)
    loaded = tk.load_index(folder)
    for got, want in ((loaded.recommend({"user_id": users}, k=k, exclude=exclude),
                       index.recommend({"user_id": users}, k=k, exclude=exclude)),
                      (loaded.similar_items(ids[:2], k=1), index.similar_items(ids[:2], k=1))):
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    assert loaded.vocabularies == index.vocabularies


@pytest.mark.parametrize("ids", [["only"], ["", "x"], [-1, 3]])
def test_the_padding_ids_are_refused_and_a_single_candidate_works(ids):
    if "" in ids or -1 in ids:
        with pytest.raises(ValueError, match="must hold no"):
            _index_case(ids)
        return
    index, users, ids_array, scores = _index_case(ids)
    top = index.recommend({"user_id": users}, k=1, exclude=[["only"], [], []])
    _check_against_numpy(top, ids_array, scores, [["only"], [], []], 1)
