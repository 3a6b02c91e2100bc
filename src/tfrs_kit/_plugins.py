"""A name-to-object registry fed by decorators and by other distributions' entry points.

The towers and datasets registries are two instances of :class:`Registry`. Entry
points are read on the first lookup (``get``/``names``), not at import. A plugin
that does not import, loads an object of the wrong kind or reuses a taken name
is reported with a warning naming its entry point, and looking up its own name
raises that error (every time); the built-ins and the other plugins keep
working, so one broken distribution cannot take the whole registry down.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from tfrs_kit._errors import invalid_argument, unknown_name

__all__ = ["Registry", "same_definition"]

T = TypeVar("T")


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    """``"entry point 'name = module:attr' (group 'g', distribution 'd 1.0')"``."""
    dist = getattr(entry_point, "dist", None)
    source = f", distribution '{dist.name} {dist.version}'" if dist is not None else ""
    return (
        f"entry point '{entry_point.name} = {entry_point.value}' "
        f"(group '{entry_point.group}'{source})"
    )


def same_definition(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one class or function defined twice.

    So they are when both have the same module and qualified name, as when a
    notebook cell that defines a class runs again and makes a new class object.
    Lambdas, whose name says nothing of them, never are.
    """
    name = getattr(a, "__qualname__", None)
    return (isinstance(name, str) and "<lambda>" not in name
            and name == getattr(b, "__qualname__", None)
            and getattr(a, "__module__", None) == getattr(b, "__module__", None))


class Registry(Generic[T]):
    """Named objects of one kind, from built-ins, decorators and entry points.

    Args:
        what: What an entry is, for messages ("tower", "dataset").
        group: The entry point group read on first lookup.
        rule: What a valid entry is, completing "... must RULE" in messages.
        is_valid: Whether an object may be registered.
        on_register: Called with ``(name, obj)`` after a new registration.
    """

    def __init__(
        self,
        *,
        what: str,
        group: str,
        rule: str,
        is_valid: Callable[[Any], bool],
        on_register: Callable[[str, T], None] | None = None,
    ) -> None:
        self.what = what
        self.group = group
        self.rule = rule
        self._is_valid = is_valid
        self._on_register = on_register
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._broken: dict[str, Exception] = {}  # plugins that failed, by entry point name
        self._loaded = False
        self._loading = False
        self._entry_points: list[importlib.metadata.EntryPoint] | None = None  # None: installed

    def register(self, name: str, obj: T, *, origin: str) -> None:
        """Adds ``obj`` under ``name``.

        The same object again is a no-op, and a new definition of it (see
        :func:`same_definition`) replaces it; another object under a taken name
        raises ``ValueError`` naming who took it.
        """
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise invalid_argument(
                "name", f"be a non-empty string without surrounding spaces to name a {self.what}",
                name, error=TypeError if not isinstance(name, str) else ValueError,
            )
        if not self._is_valid(obj):
            raise invalid_argument(
                origin, self.rule, obj, hint=f"It was to be registered as {self.what} {name!r}.",
                error=TypeError,
            )
        if name in self._entries:
            if self._entries[name] is obj:
                return
            if not same_definition(self._entries[name], obj):
                raise invalid_argument(
                    "name", f"be a {self.what} name that is not taken", name,
                    hint=f"{name!r} is already registered to {_qualname(self._entries[name])} "
                    f"by {self._origins[name]}, so {origin} cannot register "
                    f"{_qualname(obj)} under it. Choose another name.",
                )
        if self._on_register is not None:
            self._on_register(name, obj)
        self._entries[name] = obj
        self._origins[name] = origin

    def get(self, name: str, *, argument: str = "name") -> T:
        """The object registered as ``name``; entry points are loaded first.

        Args:
            name: A registered name.
            argument: The argument that gave ``name``, for the error messages
                (``"query_tower"`` when ``tk.Recipe`` looks its tower up).

        Raises:
            ValueError: No object has that name (the message lists the known ones).
            ImportError, TypeError, ValueError: ``name`` is the name of a
                plugin that failed to load (the error it failed with).
        """
        self._load_entry_points()
        if not isinstance(name, str):
            raise invalid_argument(argument, f"be a {self.what} name (a string)", name,
                                   error=TypeError)
        if name in self._broken and not (
                name in self._entries and not self._origins[name].startswith("entry point")):
            raise self._broken[name]  # only a built-in or decorated name outranks it
        if name not in self._entries:
            raise unknown_name(argument, name, self._entries, what=f"{self.what} name")
        return self._entries[name]

    def names(self) -> list[str]:
        """The sorted registered names (broken plugins left out); entry points are loaded first."""
        self._load_entry_points()
        return sorted(self._entries)

    def _load_entry_points(self) -> None:
        """Imports and registers every entry point of the group, once.

        A plugin that fails (does not import, loads an object of the wrong
        kind, takes a name already taken) is left out with a warning naming its
        entry point; looking up its name raises the error it failed with. The
        other plugins and the built-ins keep working.
        """
        if self._loaded or self._loading:
            return
        self._loading = True  # a plugin that looks names up while importing
        try:
            entry_points = (importlib.metadata.entry_points(group=self.group)
                            if self._entry_points is None else self._entry_points)
            for entry_point in entry_points:
                self._load_one(entry_point)
            self._loaded = True
        finally:
            self._loading = False

    def _load_one(self, entry_point: importlib.metadata.EntryPoint) -> None:
        origin = _describe(entry_point)
        try:
            obj = entry_point.load()
        except Exception as error:
            failure: Exception = ImportError(
                f"The tfrs_kit {self.what} plugin {origin} failed to load: "
                f"{type(error).__name__}: {error}. Fix or uninstall the distribution "
                "that declares it.")
            failure.__cause__ = error
        else:
            try:
                self.register(entry_point.name, obj, origin=origin)
                return
            except (TypeError, ValueError) as error:
                failure = error
        self._broken[entry_point.name] = failure
        warnings.warn(f"{failure} The {self.what} {entry_point.name!r} is unavailable; the "
                      f"other {self.what}s work.", RuntimeWarning, stacklevel=4)

    @contextlib.contextmanager
    def isolated(
        self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
    ) -> Iterator[Registry[T]]:
        """A context in which registrations are temporary, for tests.

        On exit, even through an exception, the registry is as it was on entry:
        its names, their origins and whether its entry points were read. Inside,
        entry points are read again on the first lookup: the installed ones, or
        ``entry_points`` in their place. What ``on_register`` did (such as
        registering a class with Keras) is the caller's to undo.

        Args:
            entry_points: The entry points to read inside instead of the
                installed ones of the group; ``None`` reads the installed ones.

        Example:
            >>> numbers = Registry(what="number", group="tfrs_kit.doc_example",
            ...                    rule="be an integer", is_valid=lambda obj: isinstance(obj, int))
            >>> with numbers.isolated():
            ...     numbers.register("one", 1, origin="a doctest")
            ...     numbers.names()
            ['one']
            >>> numbers.names()
            []
        """
        saved = (dict(self._entries), dict(self._origins), self._loaded, self._entry_points,
                 dict(self._broken))
        self._loaded = False
        self._broken = {}
        if entry_points is not None:
            self._entry_points = list(entry_points)
        try:
            yield self
        finally:
            (self._entries, self._origins, self._loaded, self._entry_points,
             self._broken) = saved


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else name
