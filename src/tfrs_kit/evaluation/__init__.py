"""Offline evaluation: splits, metrics @K, :func:`evaluate` and :class:`Report`.

Typical use (protocol P1 of the benchmarks)::

    from tfrs_kit import baselines, evaluation

    train, test = evaluation.per_user_temporal_split(ratings, test_fraction=0.2)
    report = evaluation.evaluate(
        {"popularity": baselines.Popularity().fit(train), "ease": baselines.EASE().fit(train)},
        test, train=train, k=(10, 100),
    )
    print(report)

Any model that follows the :class:`Recommender` protocol (a catalogue ``item_ids`` and a
batched ``score(user_ids)``) can be evaluated; the metric functions are also usable on
their own, on ranked lists of item ids.
"""

from tfrs_kit.evaluation._evaluate import METRICS, Recommender, evaluate
from tfrs_kit.evaluation._metrics import (
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
from tfrs_kit.evaluation._report import Report
from tfrs_kit.evaluation._splits import (
    cold_start_item_split,
    cold_start_user_split,
    leave_last_one_out,
    per_user_temporal_split,
    random_split,
    temporal_split,
)

__all__ = [
    "METRICS",
    "Recommender",
    "Report",
    "average_precision_at_k",
    "catalogue_coverage",
    "cold_start_item_split",
    "cold_start_user_split",
    "evaluate",
    "hit_rate_at_k",
    "intra_list_diversity",
    "leave_last_one_out",
    "mean_popularity",
    "ndcg_at_k",
    "novelty",
    "per_user_temporal_split",
    "precision_at_k",
    "random_split",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "temporal_split",
    "top_k_categorical_accuracy",
]
