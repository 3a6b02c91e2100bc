"""A saved folder's writer lock held by another thread, for the tests of a second writer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from tfrs_kit.recipe import _store


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path) -> Iterator[None]:
    """Holds ``folder``'s lock in another thread (the lock is re-entrant per thread, so
    only another thread makes this thread wait) until the block ends."""
    holding, done = threading.Event(), threading.Event()

    def other_writer():
        with _store.locked(folder):
            holding.set()
            done.wait(60)

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        assert holding.wait(60), "the other thread never took the lock"
        yield
    finally:
        done.set()
        thread.join()
