"""Towers by name: ``register_tower``, ``get_tower``, ``available_towers``.

Other distributions add towers through the entry point group ``tfrs_kit.towers``
(``name = "package.module:TowerClass"``), read on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._plugins import Registry, same_definition
from tfrs_kit.towers._tower import Tower

__all__ = ["available_towers", "get_tower", "register_tower"]

#: The entry point group other distributions declare their towers in.
ENTRY_POINT_GROUP = "tfrs_kit.towers"

TowerType = TypeVar("TowerType", bound=type[Tower])


def _is_tower_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Tower)


def _register_with_keras(cls: type[Tower], package: str) -> None:
    """Makes ``cls`` deserialisable by name (``"package>ClassName"``), if not already.

    A new definition of the class that holds the name takes it over.
    """
    key = f"{package}>{cls.__name__}"
    current = tf.keras.utils.get_registered_name(cls)
    if current != cls.__name__:
        return  # already registered under its own key (Tower is "tfrs_kit>Tower")
    taken = tf.keras.utils.get_custom_objects().get(key)
    if taken is not None and taken is not cls and not same_definition(taken, cls):
        raise invalid_argument(
            "package", f"give {cls.__qualname__} a Keras name no other class has", package,
            hint=f"{key!r} already names {taken.__module__}.{taken.__qualname__}; pass "
            "register_tower(..., package='another_package').",
        )
    tf.keras.utils.register_keras_serializable(package=package)(cls)


_TOWERS: Registry[type[Tower]] = Registry(
    what="tower",
    group=ENTRY_POINT_GROUP,
    rule="be a subclass of tfrs_kit.Tower",
    is_valid=_is_tower_class,
    on_register=lambda name, cls: _register_with_keras(cls, cls.__module__.split(".")[0]),
)


def register_tower(name: str, *, package: str | None = None) -> Callable[[TowerType], TowerType]:
    """A class decorator that registers a :class:`~tfrs_kit.Tower` subclass by name.

    The class is also registered for Keras serialisation as
    ``"package>ClassName"``, so models and configs holding it reload with
    ``tf.keras.models.model_from_json`` or ``from_config`` once its module is
    imported. Registering the same class under the same name again is a no-op,
    and a new definition of it (the same module and qualified name, as when a
    notebook cell that defines it runs again) replaces it; another class under
    a taken name is refused.

    Args:
        name: The name :func:`get_tower` finds it by. To ship the tower in
            another distribution, declare the same name as an entry point in the
            group ``"tfrs_kit.towers"``.
        package: The Keras package prefix; default: the class's top-level module.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        TypeError: The decorated object is not a ``Tower`` subclass.
        ValueError: ``name`` is taken by another class, or its Keras name is.

    Example:
        >>> import tfrs_kit as tk
        >>> @tk.towers.register_tower("doc_example")
        ... class DocExampleTower(tk.Tower):
        ...     pass
        >>> tk.towers.get_tower("doc_example") is DocExampleTower
        True
    """
    if package is not None and (not isinstance(package, str) or not package):
        raise invalid_argument("package", "be a non-empty string or None", package,
                               error=ValueError if isinstance(package, str) else TypeError)

    def decorator(cls: TowerType) -> TowerType:
        origin = f"@register_tower({name!r}) in module {getattr(cls, '__module__', '?')!r}"
        if package is not None and _is_tower_class(cls):
            _register_with_keras(cls, package)
        _TOWERS.register(name, cls, origin=origin)
        return cls

    return decorator


def get_tower(name: str) -> type[Tower]:
    """The tower class registered as ``name``, built in or from a plugin.

    Raises:
        ValueError: No tower has that name (the message lists the known ones).
        ImportError: A plugin's entry point failed to import.
        TypeError: A plugin's entry point is not a ``Tower`` subclass.

    Example:
        >>> import tfrs_kit as tk
        >>> tk.towers.get_tower("cross").__name__
        'CrossTower'
        >>> try:
        ...     tk.towers.get_tower("crss")
        ... except ValueError as error:
        ...     print(error)  # doctest: +ELLIPSIS
        `name` must be a known tower name. Received: name='crss'. Did you mean 'cross'? Known: ...
    """
    return _TOWERS.get(name)


def available_towers() -> list[str]:
    """The sorted names of every registered tower, plugins included.

    Example:
        >>> import tfrs_kit as tk
        >>> {"cross", "default"} <= set(tk.towers.available_towers())
        True
    """
    return _TOWERS.names()


_TOWERS.register("default", Tower, origin="tfrs_kit (built-in)")
