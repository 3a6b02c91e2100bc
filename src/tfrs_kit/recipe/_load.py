"""``tk.load``: a Recipe back from the folder ``Recipe.save`` wrote."""

from __future__ import annotations

import os

from tfrs_kit.recipe._recipe import Recipe
from tfrs_kit.recipe._save import read

__all__ = ["load", "load_recipe"]


def load(path: str | os.PathLike[str], *, version: int | None = None) -> Recipe:
    """Loads a :class:`~tfrs_kit.Recipe` that :meth:`~tfrs_kit.Recipe.save` wrote.

    The loaded Recipe recommends (:meth:`~tfrs_kit.Recipe.recommend`), evaluates
    (``tk.evaluate(recipe, test, train=train)``), builds an index and saves again,
    with the same scores as before it was saved; it cannot ``fit`` on from where it
    was (a new ``fit`` starts over).

    Args:
        path: The folder it was saved to.
        version: The version to load; default the one ``path/latest`` names.

    Returns:
        The fitted :class:`~tfrs_kit.Recipe`.

    Raises:
        ValueError: ``path`` holds no saved Recipe (another tool wrote it), it was
            written by a newer tfrs_kit (a newer format version), or ``version``
            is not a complete version there.
        ImportError: A custom tower it was built with cannot be imported.

    Example:
        >>> import tempfile, tfrs_kit as tk
        >>> data = tk.datasets.synthetic(1_000, num_users=60, num_items=40, seed=0)
        >>> recipe = tk.Recipe(time_budget=None, max_trials=1, max_epochs=2, rerank=False,
        ...                    verbose=False)
        >>> folder = tempfile.mkdtemp()
        >>> recipe.fit(data.interactions).save(folder)
        1
        >>> loaded = tk.load(folder)
        >>> loaded.recommend(history=["i1", "i2", "i3"], k=5).ids.shape
        (1, 5)
    """
    return load_recipe(path, version=version)


def load_recipe(path: str | os.PathLike[str], *, version: int | None = None,
                argument: str = "path") -> Recipe:
    """:func:`load`, its errors naming ``argument`` for the folder."""
    state = read(path, version=version, argument=argument)
    recipe = Recipe(**state["arguments"])
    recipe._restore(state["columns"], state["trained"], state["report"], state["saved"])
    recipe.cascade_ = state["cascade"]  # the kept ranking stage, if any
    return recipe
