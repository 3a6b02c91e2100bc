"""Data sources by name: ``register_dataset``, ``load_dataset``, ``available_datasets``.

Other distributions add data sources through the entry point group
``tfrs_kit.datasets`` (``name = "package.module:loader"``), read on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tfrs_kit._errors import invalid_argument
from tfrs_kit._plugins import Registry
from tfrs_kit.datasets._base import InteractionDataset
from tfrs_kit.datasets._movielens import movielens
from tfrs_kit.datasets._synthetic import synthetic

__all__ = ["available_datasets", "load_dataset", "register_dataset"]

#: The entry point group other distributions declare their data sources in.
ENTRY_POINT_GROUP = "tfrs_kit.datasets"

Loader = TypeVar("Loader", bound=Callable[..., InteractionDataset])

_DATASETS: Registry[Callable[..., InteractionDataset]] = Registry(
    what="dataset",
    group=ENTRY_POINT_GROUP,
    rule="be a callable that returns an InteractionDataset",
    is_valid=callable,
)


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """A decorator that registers a data source: a callable returning an InteractionDataset.

    Registering the same callable under the same name again is a no-op, and a new
    definition of it (same module and qualified name, as when a notebook cell runs
    again) replaces it; another callable under a taken name is refused.

    Args:
        name: The name :func:`load_dataset` finds it by. To ship the source in
            another distribution, declare the same name as an entry point in the
            group ``"tfrs_kit.datasets"``.

    Returns:
        The decorator, which returns the callable unchanged.

    Raises:
        TypeError: The decorated object is not callable.
        ValueError: ``name`` is taken by another data source.

    Example:
        >>> import pandas as pd
        >>> from tfrs_kit import datasets
        >>> @datasets.register_dataset("doc_example_clicks")
        ... def clicks() -> datasets.InteractionDataset:
        ...     events = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]})
        ...     return datasets.InteractionDataset(
        ...         interactions=events, items=events[["item"]], users=events[["user"]],
        ...         user_id="user", item_id="item", name="clicks")
        >>> datasets.load_dataset("doc_example_clicks").num_interactions
        2
    """

    def decorator(loader: Loader) -> Loader:
        origin = (f"@register_dataset({name!r}) in module "
                  f"{getattr(loader, '__module__', '?')!r}")
        _DATASETS.register(name, loader, origin=origin)
        return loader

    return decorator


def load_dataset(name: str, **kwargs: Any) -> InteractionDataset:
    """Loads the data source registered as ``name``, built in or from a plugin.

    Args:
        name: A name of :func:`available_datasets`.
        **kwargs: Passed on to the data source (for example ``data_dir`` for
            ``"movielens"``, ``num_interactions`` for ``"synthetic"``).

    Returns:
        The :class:`InteractionDataset` it returns.

    Raises:
        ValueError: No data source has that name (the message lists the known ones).
        ImportError: A plugin's entry point failed to import.
        TypeError: The source returned something else than an InteractionDataset.

    Example:
        >>> from tfrs_kit import datasets
        >>> datasets.load_dataset("synthetic", num_interactions=500).num_interactions
        500
        >>> try:
        ...     datasets.load_dataset("synthtic")
        ... except ValueError as error:
        ...     print(error)  # doctest: +ELLIPSIS
        `name` must be a known dataset name. Received: name='synthtic'. Did you mean 'synthetic'? ...
    """  # noqa: E501
    loader = _DATASETS.get(name)
    data = loader(**kwargs)
    if not isinstance(data, InteractionDataset):
        raise invalid_argument(
            f"the result of dataset {name!r}", "be an InteractionDataset", type(data).__name__,
            hint=f"Fix the data source {getattr(loader, '__qualname__', loader)!r}.",
            error=TypeError,
        )
    return data


def available_datasets() -> list[str]:
    """The sorted names of every registered data source, plugins included.

    Example:
        >>> from tfrs_kit import datasets
        >>> {"movielens", "synthetic"} <= set(datasets.available_datasets())
        True
    """
    return _DATASETS.names()


_DATASETS.register("movielens", movielens, origin="tfrs_kit (built-in)")
_DATASETS.register("synthetic", synthetic, origin="tfrs_kit (built-in)")
