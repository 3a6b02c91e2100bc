"""The final streamed training's callbacks: a progress bar with an ETA over the batches of
a Keras ``fit`` of known length, and a step budget that stops it mid-epoch by the clock;
and the process's peak memory, logged per stage."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._progress import Progress

__all__ = ["BatchProgress", "StepBudget", "peak_gib", "release_unused_memory"]


def peak_gib() -> float:
    """The process's peak resident memory so far, in GiB (0 where it is not measured).

    Linux's ``VmHWM``, this program's own peak: ``ru_maxrss`` carries over through
    ``exec`` the peak of the process that started it (a benchmark that made a 6 GiB
    log, then ran ``tfrs-kit train``, read 6 GiB in it before it read a row).

    Example:
        >>> peak_gib() >= 0.0
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:  # not Linux
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (  # bytes on macOS
        2**30 if sys.platform == "darwin" else 2**20)


def release_unused_memory() -> None:
    """Hands the memory Arrow's pool keeps after its buffers are freed back to the system.

    Arrow's default pool (mimalloc or jemalloc) holds on to freed pages for reuse:
    after the serving tables' ``seen`` frame was read from the shards (0.32 GiB at
    1e7 events), 0.16 GiB more stayed resident until this was called. Called at the
    end of each out-of-core stage; a no-op where pyarrow was not imported.

    Example:
        >>> release_unused_memory()
    """
    import sys

    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


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


class StepBudget(tf.keras.callbacks.Callback):
    """Ends a Keras ``fit`` at a step count, or mid-epoch when the clock says so.

    The training is cut into chunks of steps: after the first ``warmup`` steps (their
    tracing left out) and at each epoch's end the throughput is measured, and the
    steps that fit before ``end`` (a ``time.monotonic()``), less ``reserve()`` seconds
    kept for what follows and ``boundary()`` seconds for each epoch end on the way (its
    validation score), are planned anew: :attr:`planned` steps, at most ``steps``.
    ``decay`` (a variable, the decay steps of a cosine schedule) follows the plan, so
    that the rate ends near zero where the training ends. Whatever the plan, a batch
    that ends with less than ``reserve()`` left stops the training. With an infinite
    ``end`` (a budget in counts) the clock is never read: ``steps`` run.

    Example:
        >>> import math
        >>> budget = StepBudget(steps=6, end=math.inf)
        >>> for _ in range(6):
        ...     budget.on_train_batch_end(0)
        >>> budget.done, budget.planned, budget.why()
        (6, 6, '')
    """

    def __init__(self, *, steps: int, end: float, reserve: Callable[[], float] = lambda: 0.0,
                 boundary: Callable[[], float] = lambda: 0.0, steps_per_epoch: int = 1,
                 warmup: int = 20, decay: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.steps, self.planned, self.end = steps, steps, end
        self.reserve, self.boundary, self.clock = reserve, boundary, clock
        self.steps_per_epoch, self.warmup, self.decay = max(steps_per_epoch, 1), warmup, decay
        self.done = 0
        self.seconds_per_step: float | None = None
        self.cut_by_clock = False
        self.cut_at: tuple[float, float] | None = None  # (seconds left, reserved) at a cut
        self._mark: tuple[int, float] | None = None  # (steps, time) the speed is timed from

    @property
    def timed(self) -> bool:
        return math.isfinite(self.end)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.done += 1
        if self.timed:
            now = self.clock()
            if self.done == self.warmup:
                self._mark = (self.done, now)
            elif self.done == 2 * self.warmup:
                self._plan(now)
            if now + self.reserve() >= self.end and self.done < self.planned:
                self.cut_by_clock = True
                self.planned = self.done
                self.cut_at = (self.end - now, self.reserve())
        if self.done >= self.planned and self.model is not None:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.timed and self.done > 2 * self.warmup and self.done < self.planned:
            self._plan(self.clock())

    def _plan(self, now: float) -> None:
        """The steps that fit in the time left, at the speed measured since the mark."""
        if self._mark is None or self.done <= self._mark[0]:
            return
        self.seconds_per_step = (now - self._mark[1]) / (self.done - self._mark[0])
        left = max(self.end - now - self.reserve(), 0.0)
        per_step = self.seconds_per_step + self.boundary() / self.steps_per_epoch
        more = int(left / max(per_step, 1e-9))  # each step's share of an epoch end too
        self.planned = int(np.clip(self.done + more, self.done, self.steps))
        if self.decay is not None:
            self.decay.assign(float(max(self.planned, 1)))

    def why(self) -> str:
        """What the clock did to the plan, in words ('' when it was not read)."""
        if not self.timed or self.seconds_per_step is None:
            return "cut by the clock before its speed was measured" if self.cut_by_clock \
                else ""
        epochs = self.done / self.steps_per_epoch
        return (f"{epochs:.2f} epoch(s) of {self.steps / self.steps_per_epoch:g} fit at the "
                f"measured {1.0 / max(self.seconds_per_step, 1e-9):.1f} steps/s"
                + (": the clock cut it, keeping time for the blend and the export"
                   if self.cut_by_clock or self.planned < self.steps else "")
                + ("" if self.cut_at is None else
                   f" ({self.cut_at[0]:.0f} s left, {self.cut_at[1]:.0f} s of them reserved)"))
