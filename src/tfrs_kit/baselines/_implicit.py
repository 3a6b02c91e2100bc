"""Matrix factorisation from the ``implicit`` library (an optional extra): iALS and BPR.

``implicit`` is imported when a model is built, so ``tfrs_kit.baselines`` loads
without it. Training runs on one CPU thread (``implicit``'s and the BLAS pool's): BPR's
updates from several threads race, and a fixed seed should give fixed factors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int, check_number
from tfrs_kit.baselines._base import InteractionRecommender

__all__ = ["BPR", "ImplicitALS"]


class TrainingDiverged(ValueError):
    """A factorisation's training gave NaN or infinite factors (``tune`` skips that point)."""


def _require_implicit(model: str) -> None:
    try:
        import implicit  # noqa: F401
        import threadpoolctl  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"{model} needs the `implicit` package. Install it with "
            '`pip install "tfrs-kit[implicit]"`.'
        ) from error


class _Factorization(InteractionRecommender):
    """Scores ``user_factors @ item_factors.T`` of an ``implicit`` model fitted on one thread."""

    #: The setting that keeps training finite, and which way to move it.
    _stability: tuple[str, str]

    def _implicit_model(self) -> Any:
        raise NotImplementedError

    def _fit_matrix(self, interactions: sp.csr_matrix) -> None:
        from implicit.recommender_base import ModelFitError
        from threadpoolctl import threadpool_limits

        argument, fix = self._stability
        diverged = invalid_argument(
            argument, f"keep {type(self).__name__}'s factors finite on this log",
            getattr(self, argument), hint=f"Training gave NaN or infinite factors: {fix}.",
            error=TrainingDiverged)
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._implicit_model()
            try:
                model.fit(interactions, show_progress=False)
            except ModelFitError as error:  # implicit's "NaN encountered in factors"
                raise diverged from error
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        if not (np.isfinite(self.user_factors_).all() and np.isfinite(self.item_factors_).all()):
            raise diverged

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T


class ImplicitALS(_Factorization):
    """Implicit-feedback ALS (Hu, Koren and Volinsky, 2008), by ``implicit``'s CPU solver.

    Minimises ``sum c_ui (p_ui - x_u·y_i)² + regularization (|x_u|² + |y_i|²)`` over all
    (user, item) pairs, with ``p_ui = 1`` for an interaction (else 0) and confidence
    ``c_ui = 1 + alpha`` for an interaction (else 1); ``score(u, i) = x_u·y_i``. Needs
    the optional ``implicit`` package: ``pip install "tfrs-kit[implicit]"``.

    Args:
        factors: The number of latent factors.
        regularization: The L2 weight on the factors (>= 0).
        alpha: The extra confidence given to an interaction (> 0).
        iterations: The number of alternating sweeps.
        seed: Seeds the initial factors; the same seed gives the same model.

    Raises:
        ImportError: ``implicit`` is not installed.
        ValueError: ``fit``'s training gave NaN or infinite factors; the message
            names the setting to change.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]}
        >>> model = ImplicitALS(factors=2, iterations=5).fit(log)
        >>> model.score([3]).shape
        (1, 2)
    """

    _stability = ("regularization", "raise it, or lower `alpha`")

    def __init__(self, *, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, seed: int = 0) -> None:
        self.factors = check_int("factors", factors, minimum=1)
        self.regularization = check_number("regularization", regularization, minimum=0)
        self.alpha = check_number("alpha", alpha, minimum=0, low_open=True)
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        _require_implicit(type(self).__name__)

    def _params(self) -> dict[str, object]:
        return {"factors": self.factors, "regularization": self.regularization,
                "alpha": self.alpha, "iterations": self.iterations, "seed": self.seed}

    def _implicit_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, num_threads=1,
        )


class BPR(_Factorization):
    """Bayesian personalised ranking (Rendle et al., 2009), by ``implicit``'s CPU trainer.

    Stochastic gradient ascent on ``log sigmoid(score(u, i) - score(u, j))`` for sampled
    triples of a user, one of their items ``i`` and an item ``j`` they did not interact
    with; ``score(u, i) = x_u·y_i + b_i``. Needs the optional ``implicit`` package:
    ``pip install "tfrs-kit[implicit]"``.

    Args:
        factors: The number of latent factors.
        learning_rate: The SGD step size (> 0).
        regularization: The L2 weight on the factors (>= 0).
        iterations: The number of passes over the interactions.
        seed: Seeds the initial factors and the sampling; the same seed gives the same
            model.

    Raises:
        ImportError: ``implicit`` is not installed.
        ValueError: ``fit``'s training gave NaN or infinite factors; the message
            names the setting to change.

    Example:
        >>> log = {"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]}
        >>> model = BPR(factors=2, iterations=5).fit(log)
        >>> model.score([3]).shape
        (1, 2)
    """

    _stability = ("learning_rate", "lower it, or raise `regularization`")

    def __init__(self, *, factors: int = 64, learning_rate: float = 0.01,
                 regularization: float = 0.01, iterations: int = 100, seed: int = 0) -> None:
        self.factors = check_int("factors", factors, minimum=1)
        self.learning_rate = check_number("learning_rate", learning_rate, minimum=0,
                                          low_open=True)
        self.regularization = check_number("regularization", regularization, minimum=0)
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        _require_implicit(type(self).__name__)

    def _params(self) -> dict[str, object]:
        return {"factors": self.factors, "learning_rate": self.learning_rate,
                "regularization": self.regularization, "iterations": self.iterations,
                "seed": self.seed}

    def _implicit_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate,
            regularization=self.regularization, iterations=self.iterations,
            random_state=self.seed, num_threads=1,
        )
