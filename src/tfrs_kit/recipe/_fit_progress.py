"""A progress bar with an ETA over the batches of a Keras ``fit`` of known length."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfrs_kit._progress import Progress

__all__ = ["BatchProgress"]


class BatchProgress(tf.keras.callbacks.Callback):
    """Draws :class:`~tfrs_kit._progress.Progress` over ``epochs x steps`` batches.

    The bar spans every planned epoch, so its ETA is the whole training's; an early
    stop ends the bar where it is. ``verbose`` as every public ``verbose``: ``"auto"``
    shows it when the epochs hold a million rows or more.

    Example:
        >>> bar = BatchProgress(epochs=2, steps=3, rows=10, description="fit", verbose=False)
        >>> for _ in range(6):
        ...     bar.on_train_batch_end(0)
        >>> bar.progress.done
        6
    """

    def __init__(self, *, epochs: int, steps: int, rows: int, description: str,
                 verbose: Any = "auto") -> None:
        super().__init__()
        self.progress = Progress(epochs * steps, description=description, verbose=verbose,
                                 size=epochs * rows)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.progress.update(1)

    def on_train_end(self, logs: Any = None) -> None:
        self.progress.close()
