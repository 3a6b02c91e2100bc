"""Metrics @K against plain-Python references, known answers and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrs_kit.evaluation import (
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    intra_list_diversity,
    mean_popularity,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    top_k_categorical_accuracy,
)
from tfrs_kit.evaluation._evaluate import _top_k

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
MANY = settings(max_examples=150, deadline=None, derandomize=True)


# ------------------------------------------------------------------ plain references


def ref_recall(ranked, relevant, k):
    return sum(i in relevant for i in ranked[:k]) / min(k, len(relevant))


def ref_precision(ranked, relevant, k):
    return sum(i in relevant for i in ranked[:k]) / k


def ref_ndcg(ranked, relevant, k):
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in relevant)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / idcg


def ref_ap(ranked, relevant, k):
    hits, total = 0, 0.0
    for r, i in enumerate(ranked[:k]):
        if i in relevant:
            hits += 1
            total += hits / (r + 1)
    return total / min(k, len(relevant))


def ref_rr(ranked, relevant, k):
    for r, i in enumerate(ranked[:k]):
        if i in relevant:
            return 1 / (r + 1)
    return 0.0


def ref_hit(ranked, relevant, k):
    return float(any(i in relevant for i in ranked[:k]))


def ref_jaccard_ild(ranked, attributes, k):
    dists = []
    for a in range(k):
        for b in range(a + 1, k):
            x, y = attributes[ranked[a]], attributes[ranked[b]]
            union = x | y
            dists.append(1 - len(x & y) / len(union) if union else 0.0)
    return sum(dists) / len(dists)


REFERENCES = [
    (recall_at_k, ref_recall),
    (precision_at_k, ref_precision),
    (ndcg_at_k, ref_ndcg),
    (average_precision_at_k, ref_ap),
    (reciprocal_rank_at_k, ref_rr),
    (hit_rate_at_k, ref_hit),
]


@st.composite
def rankings(draw):
    """Ranked lists over a small catalogue, and non-empty relevant sets (some unrankable)."""
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(2, 15))
    width = draw(st.integers(1, n_items))
    k = draw(st.integers(1, width))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ranked = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    relevant = [
        set(rng.choice(n_items + 3, size=rng.integers(1, n_items + 1), replace=False).tolist())
        for _ in range(n_users)
    ]
    return ranked, relevant, k


@pytest.mark.parametrize(("metric", "reference"), REFERENCES,
                         ids=[m.__name__ for m, _ in REFERENCES])
@SETTINGS
@given(case=rankings())
def test_ranking_metrics_match_reference(metric, reference, case):
    ranked, relevant, k = case
    expected = [reference(list(row), rel, k) for row, rel in zip(ranked, relevant, strict=True)]
    np.testing.assert_allclose(metric(ranked, relevant, k=k, per_user=True), expected)
    assert metric(ranked, relevant, k=k) == pytest.approx(np.mean(expected))


@SETTINGS
@given(case=rankings(), distance=st.sampled_from(["jaccard", "cosine"]))
def test_intra_list_diversity_matches_reference(case, distance):
    ranked, _, _ = case
    if ranked.shape[1] < 2:
        return
    n_items = int(ranked.max()) + 1
    rng = np.random.default_rng(n_items)
    vectors = (rng.random((n_items, 4)) < 0.4).astype(float) if distance == "jaccard" else (
        rng.standard_normal((n_items, 3)))
    if distance == "jaccard":
        sets = [set(np.flatnonzero(v)) for v in vectors]
        expected = [ref_jaccard_ild(list(r), sets, ranked.shape[1]) for r in ranked]
    else:
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        expected = [np.mean([1 - unit[r[a]] @ unit[r[b]] for a in range(len(r))
                             for b in range(a + 1, len(r))]) for r in ranked]
    got = intra_list_diversity(ranked, item_ids=np.arange(n_items), item_vectors=vectors,
                               distance=distance, per_user=True)
    np.testing.assert_allclose(got, expected, atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8))
def test_top_k_categorical_accuracy_matches_reference(seed, k):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(7, 9)).astype(float)  # many ties
    targets = rng.integers(0, 9, size=7)
    expected = np.mean([(row > row[t]).sum() < k for row, t in zip(scores, targets, strict=True)])
    assert top_k_categorical_accuracy(scores, targets, k=k) == pytest.approx(expected)


@MANY
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40), wide=st.booleans(),
       levels=st.sampled_from([3, 50, 0]), masked=st.sampled_from([0.0, 0.2, 0.995]))
def test_top_k_equals_stable_argsort(seed, k, wide, levels, masked):
    rng = np.random.default_rng(seed)
    n_cols = 3001 if wide else 60
    scores = (rng.integers(0, levels, size=(5, n_cols)).astype(np.float32) if levels
              else rng.standard_normal((5, n_cols)).astype(np.float32))  # ties, or none
    scores[rng.random(scores.shape) < masked] = -np.inf
    cols, values = _top_k(scores, k)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


def test_novelty_and_popularity_match_reference():
    train = {"user_id": [1, 2, 3, 4, 4, 1], "item_id": [10, 10, 10, 11, 11, 12]}
    ranked = [[10, 11], [12, 13]]  # 13 is unseen: treated as one user
    assert novelty(ranked, train=train, per_user=True).tolist() == pytest.approx(
        [(math.log2(4 / 3) + math.log2(4)) / 2, (math.log2(4) + math.log2(4)) / 2])
    assert mean_popularity(ranked, train=train) == pytest.approx(((3 + 1) / 2 + (1 + 0) / 2) / 2)
    assert mean_popularity(ranked, train=train, k=1) == pytest.approx(2.0)


# ------------------------------------------------------------------------ known answers


def test_perfect_ranking_scores_one_even_with_more_relevant_than_k():
    ranked = [[1, 2, 3], [4, 5, 6]]
    relevant = [{1, 2, 3, 9}, {4, 5}]
    for metric in (recall_at_k, ndcg_at_k, hit_rate_at_k, reciprocal_rank_at_k,
                   average_precision_at_k):
        assert metric(ranked, relevant, k=2) == 1.0, metric.__name__


def test_no_hits_scores_zero():
    for metric, _ in REFERENCES:
        assert metric([[1, 2]], [{3}], k=2) == 0.0


def test_tied_target_counts_as_in_top_k():
    assert top_k_categorical_accuracy([[1.0, 1.0, 1.0]], [2], k=1) == 1.0
    assert top_k_categorical_accuracy([[1.0, 2.0, 1.0]], [2], k=1) == 0.0


def test_duplicate_relevant_items_count_once_and_ids_can_be_strings():
    assert recall_at_k([["a", "b"]], [["b", "b"]], k=2) == 1.0


def test_coverage_counts_distinct_items():
    assert catalogue_coverage([[1, 2, 3], [3, 2, 4]], num_items=8, k=2) == 3 / 8


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("k", "error"), [(0, ValueError), (-1, ValueError), (4, ValueError),
                                          (1.5, TypeError), (True, TypeError)])
def test_bad_k_is_rejected(k, error):
    with pytest.raises(error, match="`k` must"):
        recall_at_k([[1, 2, 3]], [{1}], k=k)


def test_bad_num_items_and_targets_are_rejected():
    with pytest.raises(ValueError, match="`num_items` must be an integer >= 1"):
        catalogue_coverage([[1, 2]], num_items=0)
    with pytest.raises(TypeError, match="`num_items` must be an integer >= 1"):
        catalogue_coverage([[1, 2]], num_items=10.0)
    with pytest.raises(ValueError, match="at least the number of distinct recommended items"):
        catalogue_coverage([[1, 2]], num_items=1)
    with pytest.raises(TypeError, match=r"`targets` must be 1 column indices in \[0, 2\)"):
        top_k_categorical_accuracy([[0.1, 0.2]], [1.0], k=1)
    with pytest.raises(ValueError, match=r"`targets` must be 1 column indices in \[0, 2\)"):
        top_k_categorical_accuracy([[0.1, 0.2]], [2], k=1)
    with pytest.raises(TypeError, match="`relevant` must hold one collection"):
        recall_at_k([[1, 2]], "1")


def test_top_k_accuracy_k_larger_than_catalogue():
    with pytest.raises(ValueError, match="at most the number of items"):
        top_k_categorical_accuracy([[0.1, 0.2]], [0], k=3)


def test_repeated_item_in_a_row_is_rejected():
    with pytest.raises(ValueError, match="not repeat an item"):
        ndcg_at_k([[1, 1, 2]], [{1}])


def test_empty_relevant_set_is_rejected():
    with pytest.raises(ValueError, match="at least one item for every row"):
        recall_at_k([[1, 2]], [set()])


def test_relevant_length_must_match():
    with pytest.raises(ValueError, match="one collection of relevant item ids per row"):
        recall_at_k([[1, 2], [2, 3]], [{1}])


def test_mismatched_id_kinds_are_rejected():
    with pytest.raises(TypeError, match="same kind"):
        recall_at_k([[1, 2]], [{"1"}])
    with pytest.raises(TypeError, match=r"same kind as recommended \(number ids\)\. "
                       r"Received: relevant=string ids such as '1'\."):
        recall_at_k([[1, 2]], [{"1"}])
    with pytest.raises(TypeError, match=r"`relevant` must hold item ids of one kind"):
        recall_at_k([[1, 2], [3, 4]], [[1], np.array([2, "2"], dtype=object)])
    mixed = np.array([[1, 2], [3, "4"]], dtype=object)  # a string in the last row only
    with pytest.raises(TypeError, match=r"`recommended` must hold item ids of one kind"):
        ndcg_at_k(mixed, [[1], [3]])


def test_diversity_needs_two_items_and_known_ids():
    with pytest.raises(ValueError, match="at least 2"):
        intra_list_diversity([[1, 2]], item_ids=[1, 2], item_vectors=[[1], [0]], k=1)
    with pytest.raises(ValueError, match="only ids listed"):
        intra_list_diversity([[1, 3]], item_ids=[1, 2], item_vectors=[[1], [0]])
    with pytest.raises(ValueError, match="`distance` must"):
        intra_list_diversity([[1, 2]], item_ids=[1, 2], item_vectors=[[1], [0]], distance="l1")
