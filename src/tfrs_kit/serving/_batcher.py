"""Micro-batching: concurrent queries gathered into one call, run off the event loop.

A batch closes when it holds ``max_batch_size`` queries or when its first query has
waited ``max_wait_ms``, whichever comes first; it then runs on one worker thread while
the next batch gathers. Each query's answer goes back to the request that sent it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MicroBatcher"]

logger = logging.getLogger("tfrs_kit.serving")


@dataclasses.dataclass
class _Pending:
    item: Any
    future: asyncio.Future[Any]
    enqueued: float


class MicroBatcher:
    """Gathers submitted items into batches for ``run``, one batch at a time.

    Args:
        run: Answers a batch: one answer per item, in order. Runs on a worker thread.
        max_batch_size: The most items in one batch.
        max_wait_ms: How long the first item of a batch waits for others.
        on_error: Turns an unexpected exception of ``run`` into each item's answer.
    """

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch_size: int,
                 max_wait_ms: float, on_error: Callable[[BaseException], Any]) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._on_error = on_error
        self._queue: asyncio.Queue[_Pending] | None = None
        self._last_size = max_batch_size  # the previous batch's size (none yet: "full")
        self._wanted = 0  # with _wake: how many queued items end the current wait
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tfrs-kit-batch")

    async def submit(self, item: Any) -> Any:
        """``item``'s answer, once the batch that holds it has run."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or self._task is None or self._task.done():
            queue = self._queue = asyncio.Queue()
            self._task = loop.create_task(self._gather_and_run(queue))
        pending = _Pending(item, loop.create_future(), loop.time())
        queue.put_nowait(pending)
        wake = self._wake
        if wake is not None and queue.qsize() >= self._wanted and not wake.done():
            wake.set_result(None)
        return await pending.future

    async def stop(self) -> None:
        """Stops gathering; batches still queued are answered with ``on_error``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_result(self._on_error(RuntimeError("server stopping")))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _gather_and_run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            try:
                await self._gather(loop, queue, batch)
                await self._run_batch(loop, batch)
            except asyncio.CancelledError:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_result(self._on_error(RuntimeError("stopping")))
                raise

    async def _gather(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[_Pending],
                      batch: list[_Pending]) -> None:
        """Adds queued items to ``batch`` until it is full or its first item's wait ends.

        One wait per batch, not one per item: :meth:`submit` wakes it when enough items
        are queued to fill the batch, a timer when the first item's wait is over. After
        a batch of one (no concurrent queries then) a lone query does not wait: a single
        client pays no batching delay, and under load batches stay large.
        """
        remaining = batch[0].enqueued + self.max_wait - loop.time()
        missing = self.max_batch_size - len(batch)
        lone = self._last_size == 1 and queue.empty()
        if remaining > 0 and queue.qsize() < missing and not lone:
            wake = self._wake = loop.create_future()
            self._wanted = missing
            timer = loop.call_later(remaining, _wake_up, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None
        while len(batch) < self.max_batch_size and not queue.empty():
            batch.append(queue.get_nowait())
        self._last_size = len(batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a client may have gone
        if not live:
            return
        try:
            answers = await loop.run_in_executor(self._executor, self._run,
                                                 [p.item for p in live])
        except Exception as error:  # every request gets an answer
            logger.exception("A batch of %d queries failed", len(live))
            answers = [self._on_error(error)] * len(live)
        for pending, answer in zip(live, answers, strict=True):
            if not pending.future.done():
                pending.future.set_result(answer)


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
