"""Test-only isolation of the registries: registers nothing for good.

Kept out of the shipped ``tfrs_kit.testing`` because it reaches into private parts
(the registries' internals and ``tf_keras.src``), which plugin authors must not rely on.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf

from tfrs_kit.datasets._registry import _DATASETS
from tfrs_kit.towers._registry import _TOWERS


@contextlib.contextmanager
def isolated_registries(
    entry_points: Mapping[str, Sequence[importlib.metadata.EntryPoint]] | None = None,
) -> Iterator[None]:
    """Registers nothing for good: the tower and dataset registries and Keras's
    custom objects are restored on exit. ``entry_points`` (group to entry points)
    replaces the installed ones; either way they are read again on the next lookup.
    """
    keras_objects = tf.keras.utils.get_custom_objects()
    keras_names = _keras_custom_names()
    saved_objects, saved_names = keras_objects.copy(), keras_names.copy()
    try:
        with contextlib.ExitStack() as stack:
            for registry in (_TOWERS, _DATASETS):
                stack.enter_context(registry.isolated(
                    None if entry_points is None else entry_points.get(registry.group, ())))
            yield
    finally:
        keras_objects.clear()
        keras_objects.update(saved_objects)
        keras_names.clear()
        keras_names.update(saved_names)


def _keras_custom_names() -> dict[Any, str]:
    from tf_keras.src.saving import object_registration

    return object_registration._GLOBAL_CUSTOM_NAMES
