"""The deep-and-cross tower: explicit feature crosses before the deep layers.

It is registered with :func:`~tfrs_kit.towers.register_tower` exactly as a
plugin would be, and serves as the worked example of a custom tower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_kit._validation import check_int
from tfrs_kit.features._vocabulary import Vocabularies
from tfrs_kit.towers._registry import register_tower
from tfrs_kit.towers._tower import Tower

__all__ = ["CrossTower"]


@register_tower("cross")
class CrossTower(Tower):
    """A Deep & Cross Network (DCN-v2) tower, in the stacked layout.

    The feature embeddings are concatenated into ``x0``; each of
    ``num_cross_layers`` ``tfrs.layers.dcn.Cross`` layers computes
    ``x_{l+1} = x0 * (W x_l + b) + x_l``, learning bounded-degree feature
    interactions explicitly. The result then goes through the optional deep
    layers (``hidden_dims``) and the projection to ``output_dim``, as in
    :class:`~tfrs_kit.Tower`.

    Args:
        vocabularies: The fitted vocabularies of (at least) ``features``.
        features: The names of the input features; each needs a vocabulary.
        output_dim: The size of the embedding it outputs.
        num_cross_layers: The number of stacked cross layers (at least 1).
        projection_dim: If given, each cross layer's weight is factored into
            two matrices of this inner size (low-rank DCN), which is cheaper
            for many features.
        **kwargs: The other :class:`~tfrs_kit.Tower` arguments
            (``embedding_dim``, ``hidden_dims``, ``dropout``, ``normalize``, ``name``).

    Example:
        >>> import tfrs_kit as tk
        >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"], "age": [20.0, 30.0]})
        >>> Cross = tk.towers.get_tower("cross")
        >>> tower = Cross(vocabs, features=["user_id", "age"], output_dim=4, hidden_dims=[8])
        >>> tower({"user_id": tf.constant(["a"]), "age": tf.constant([25.0])}).shape
        TensorShape([1, 4])
    """

    def __init__(
        self,
        vocabularies: Vocabularies | Mapping[str, Any] | None = None,
        *,
        features: Sequence[str],
        output_dim: int = 64,
        num_cross_layers: int = 2,
        projection_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(vocabularies, features=features, output_dim=output_dim, **kwargs)
        self.num_cross_layers = check_int("num_cross_layers", num_cross_layers, minimum=1)
        self.projection_dim = check_int("projection_dim", projection_dim, minimum=1,
                                        allow_none=True)
        self.crosses = [
            tfrs.layers.dcn.Cross(projection_dim=self.projection_dim,
                                  kernel_initializer="glorot_uniform", name=f"cross_{i}")
            for i in range(self.num_cross_layers)
        ]

    def encode(self, features: Mapping[str, Any]) -> tf.Tensor:
        """The concatenated feature embeddings after the cross layers."""
        x0 = super().encode(features)
        x = x0
        for cross in self.crosses:
            x = cross(x0, x)
        return x

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_cross_layers": self.num_cross_layers,
            "projection_dim": self.projection_dim,
        }
