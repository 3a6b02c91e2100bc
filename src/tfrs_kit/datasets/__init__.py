"""Interaction data sets: MovieLens (tfds or GroupLens files) and a synthetic generator.

Every loader returns an :class:`InteractionDataset`: the interaction log with user and
item features joined on, the item and user tables, and the names of the id,
timestamp and feature columns. Loaders are also found by name
(:func:`load_dataset`): the built-ins ``"movielens"`` and ``"synthetic"``, those
registered with :func:`register_dataset`, and those other distributions declare in
the entry point group ``"tfrs_kit.datasets"``; ``tfrs-kit demo --dataset NAME``
loads them and ``tfrs-kit datasets`` lists them.

>>> from tfrs_kit import datasets
>>> datasets.synthetic(1_000).name
'synthetic'
"""

from tfrs_kit.datasets._base import InteractionDataset
from tfrs_kit.datasets._movielens import MOVIELENS_GENRES, MOVIELENS_OCCUPATIONS, movielens
from tfrs_kit.datasets._registry import (
    available_datasets,
    load_dataset,
    register_dataset,
)
from tfrs_kit.datasets._synthetic import synthetic

__all__ = [
    "MOVIELENS_GENRES",
    "MOVIELENS_OCCUPATIONS",
    "InteractionDataset",
    "available_datasets",
    "load_dataset",
    "movielens",
    "register_dataset",
    "synthetic",
]
