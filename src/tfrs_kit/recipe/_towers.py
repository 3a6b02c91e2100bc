"""The Recipe's towers: a registered name, a ``Tower`` subclass or a function, built per trial."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit.recipe._settings import Allowed
from tfrs_kit.towers._registry import _TOWERS
from tfrs_kit.towers._tower import Tower

__all__ = ["DEFAULT_TOWERS", "RECIPE_OPTIONS", "TowerFactory", "Towers", "tower_factory"]

#: The keyword arguments the Recipe gives a tower besides ``vocabularies`` (positional),
#: ``features`` and ``output_dim``, each only to a tower whose constructor accepts it.
RECIPE_OPTIONS = frozenset({"normalize", "combine", "sequence_features", "feature_dropout"})

_RULE = "be a registered tower name, a tfrs_kit.Tower subclass or a function that builds a tower"


@dataclasses.dataclass(frozen=True)
class TowerFactory:
    """How the Recipe builds one side's tower, anew for every setting it trains.

    Attributes:
        name: The name the report gives it: the registered name it was given by,
            else the class's or the function's name.
        build: Called as ``build(vocabularies, features=..., output_dim=..., **options)``.
        accepts: The :data:`RECIPE_OPTIONS` its signature takes (all with ``**kwargs``).
    """

    name: str
    build: Callable[..., Any]
    accepts: frozenset[str]

    @property
    def built_in(self) -> bool:
        """Whether it is :class:`~tfrs_kit.Tower` itself."""
        return self.build is Tower

    @property
    def builds_encoders(self) -> bool:
        """Whether it is a ``Tower`` subclass that builds the built-in feature encoders."""
        return (isinstance(self.build, type) and issubclass(self.build, Tower)
                and self.build.requires_vocabularies)

    def __call__(self, vocabularies: Any, *, features: list[str], output_dim: int,
                 **options: Any) -> Any:
        kept = {key: value for key, value in options.items() if key in self.accepts}
        return self.build(vocabularies, features=features, output_dim=output_dim, **kept)


@dataclasses.dataclass(frozen=True)
class Towers:
    """The query and candidate towers of every model the Recipe trains."""

    query: TowerFactory
    candidate: TowerFactory

    @property
    def sequence(self) -> bool:
        """Whether the query tower takes ``sequence_features`` (the order-aware history)."""
        return "sequence_features" in self.query.accepts

    def allowed(self) -> Allowed:
        """The settings both towers can take (see :class:`Allowed`)."""
        both = (self.query, self.candidate)
        return Allowed(
            cosine=all("normalize" in side.accepts for side in both),
            id_dropout="feature_dropout" in self.candidate.accepts,
            share_history=all(side.builds_encoders for side in both),
            warm_start=all(side.built_in for side in both),
        )

    def names(self) -> tuple[str, str]:
        """The query and the candidate tower's names."""
        return self.query.name, self.candidate.name


def tower_factory(argument: str, tower: Any) -> TowerFactory:
    """``tower`` (a registered name, a ``Tower`` subclass or a function) as a factory.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
        TypeError: Anything else than the three, such as a built tower or
            another class, or one that does not take ``features`` and ``output_dim``.
    """
    if tower is Tower or (isinstance(tower, str) and tower == "default"):
        return _DEFAULT  # what "default" always names: no plugin is imported for it
    if isinstance(tower, str):
        name, build = tower, _TOWERS.get(tower, argument=argument)
    elif isinstance(tower, tf.keras.layers.Layer):
        raise invalid_argument(
            argument, _RULE, f"a built {type(tower).__name__}", error=TypeError,
            hint=f"The Recipe builds a new tower for every setting it trains: pass "
            f"{argument}={type(tower).__name__} (the class) or a function that builds it.")
    elif isinstance(tower, type):
        if not issubclass(tower, Tower):
            raise invalid_argument(argument, _RULE, tower, error=TypeError,
                                   hint="A class must subclass tfrs_kit.Tower.")
        name, build = tower.__qualname__, tower
    elif callable(tower):
        name = getattr(tower, "__qualname__", None) or type(tower).__qualname__
        build = tower
    else:
        raise invalid_argument(argument, _RULE, tower, error=TypeError)
    return TowerFactory(name, build, _accepted(argument, build))


def _accepted(argument: str, build: Callable[..., Any]) -> frozenset[str]:
    """The :data:`RECIPE_OPTIONS` ``build`` takes; it must take ``features`` and
    ``output_dim`` by keyword and the vocabularies first."""
    try:
        parameters = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a C callable): assume all
        return RECIPE_OPTIONS
    named: frozenset[str] | set[str]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        named = RECIPE_OPTIONS | {"features", "output_dim"}
    else:
        named = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    positional = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                     for p in parameters)
    missing = [n for n in ("features", "output_dim") if n not in named]
    if missing or not positional:
        what = getattr(build, "__qualname__", type(build).__qualname__)
        raise invalid_argument(
            argument, "build a tower from the arguments tfrs_kit.Tower takes", what,
            error=TypeError,
            hint="The Recipe calls it as (vocabularies, features=[...], output_dim=..., "
            f"...); its signature lacks {', '.join(missing) or 'a positional vocabularies'}.")
    return frozenset(RECIPE_OPTIONS & named)


_DEFAULT = TowerFactory("default", Tower, RECIPE_OPTIONS)
DEFAULT_TOWERS = Towers(_DEFAULT, _DEFAULT)
