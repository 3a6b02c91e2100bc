"""Micro-batching: concurrent queries gathered into one call, run off the event loop.

A batch closes when it holds ``max_batch_size`` queries or when its first query has
waited ``max_wait_ms``, whichever comes first; it then runs on one worker thread while
the next batch gathers. Each query's answer goes back to the request that sent it.

The queue is bounded (``max_queue``): under more load than the model can answer, a
query that finds it full is refused at once instead of waiting behind the others, so
latency stays bounded and a client (or its load balancer) can retry elsewhere. A query
not answered within ``timeout_s`` is answered with ``on_overload("timeout")``; if it is
still queued, it is left out of its batch. One sweeper task expires them, every tenth of
the timeout (at most every half second), rather than a timer per query (a heap entry
to push and cancel for every request).
"""

from __future__ import annotations

import asyncio
import collections
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
        max_queue: The most items waiting for a batch (0: no bound). An item submitted
            while it is full is answered ``on_overload("queue")`` at once.
        timeout_s: The longest an item waits for its answer (0: no limit); then it is
            answered ``on_overload("timeout")``.
        on_overload: The answer of an item refused or timed out, by reason.
    """

    def __init__(self, run: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch_size: int,
                 max_wait_ms: float, on_error: Callable[[BaseException], Any],
                 max_queue: int = 0, timeout_s: float = 0,
                 on_overload: Callable[[str], Any] = repr) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._on_error = on_error
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._on_overload = on_overload
        self._queue: asyncio.Queue[_Pending] | None = None
        self._last_size = max_batch_size  # the previous batch's size (none yet: "full")
        self._wanted = 0  # with _wake: how many queued items end the current wait
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._waiting: collections.deque[_Pending] = collections.deque()  # oldest first
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tfrs-kit-batch")

    def has_room(self, count: int = 1) -> bool:
        """Whether ``count`` more items fit in the queue now."""
        queue = self._queue
        return (not self.max_queue or queue is None
                or queue.qsize() + count <= self.max_queue)

    async def submit(self, item: Any) -> Any:
        """``item``'s answer, once the batch that holds it has run.

        ``on_overload("queue")`` at once when the queue is full, and
        ``on_overload("timeout")`` when it is not answered within ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None or self._task is None or self._task.done():
            queue = self._queue = asyncio.Queue()
            self._task = loop.create_task(self._gather_and_run(queue))
        elif self.max_queue and queue.qsize() >= self.max_queue:
            return self._on_overload("queue")
        pending = _Pending(item, loop.create_future(), loop.time())
        queue.put_nowait(pending)
        wake = self._wake
        if wake is not None and queue.qsize() >= self._wanted and not wake.done():
            wake.set_result(None)
        if self.timeout_s:
            self._waiting.append(pending)
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = loop.create_task(self._sweep())
        return await pending.future

    async def _sweep(self) -> None:
        """Answers the items waiting longer than ``timeout_s``; forgets the answered ones.

        Items are appended in the order they arrive and mostly answered in that order, so
        the oldest are at the left: answered ones are dropped from there, and the first
        one neither answered nor expired ends a sweep.
        """
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        while True:
            await asyncio.sleep(min(self.timeout_s / 10, 0.5))
            expired = loop.time() - self.timeout_s
            while waiting and (waiting[0].future.done() or waiting[0].enqueued <= expired):
                future = waiting.popleft().future
                if not future.done():  # a batch skips it; a later answer is dropped
                    future.set_result(self._on_overload("timeout"))

    async def stop(self) -> None:
        """Stops gathering; batches still queued are answered with ``on_error``."""
        for task in (self._sweeper, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._waiting.clear()
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
