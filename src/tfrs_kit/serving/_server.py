"""The server's state: the version being served, the watcher that swaps it, the batcher.

The served version is one attribute, replaced in a single assignment once its successor
is loaded and warmed up, so every batch reads one version from start to end and
answers with that version's number. A version that fails to load is logged, counted
and remembered (versions are immutable, so it is not retried); the current one keeps
serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tfrs_kit.serving._batcher import MicroBatcher
from tfrs_kit.serving._metrics import Metrics
from tfrs_kit.serving._model import Answer, ServedModel, load_model, run_batch
from tfrs_kit.serving._requests import Query, RequestError
from tfrs_kit.serving._versions import (
    available_versions,
    is_versioned,
    latest_version,
    version_path,
)

__all__ = ["Server"]

logger = logging.getLogger("tfrs_kit.serving")

#: Versions other than the served one kept loaded for ``"version": n`` requests.
PINNED_VERSIONS = 2

#: Seconds an overloaded server asks a client to wait before it retries.
RETRY_AFTER_S = 1


class Server:
    """The state behind an app: the version served, the watcher and the batcher.

    :func:`~tfrs_kit.serving.app` makes one (``app.state.server``). Tests and operators
    call :meth:`check_for_new_version` to poll at once.

    Attributes:
        model: The version being served (``None`` until the first one is ready).
        metrics: Its Prometheus metrics.
    """

    def __init__(self, directory: str | os.PathLike[str], *, metrics: Metrics,
                 max_batch_size: int, max_wait_ms: float, poll_interval_s: float,
                 warmup: Mapping[str, Any] | None, max_queue: int = 0,
                 request_timeout_s: float = 0) -> None:
        self.directory = Path(directory)
        self.versioned = is_versioned(self.directory)
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.model: ServedModel | None = None
        self.load_error: str | None = None
        self._warmup = warmup
        self._failed: set[int] = set()
        self._swap_lock = asyncio.Lock()
        self._pin_lock = asyncio.Lock()
        self._pinned: dict[int, ServedModel] = {}  # oldest first
        self._tasks: list[asyncio.Task[Any]] = []
        self.batcher = MicroBatcher(self._run, max_batch_size=max_batch_size,
                                    max_wait_ms=max_wait_ms, on_error=_internal_error,
                                    max_queue=max_queue, timeout_s=request_timeout_s,
                                    on_overload=_overloaded)

    @property
    def ready(self) -> bool:
        """Whether a version is loaded and warmed up."""
        return self.model is not None

    async def start(self) -> None:
        """Loads the first version in the background, then polls for new ones."""
        first = asyncio.create_task(self.check_for_new_version())
        self._tasks += [first, asyncio.create_task(self._watch(first))]

    async def first_load(self) -> None:
        """Returns once the first load has finished (whether or not it succeeded)."""
        if self._tasks:
            await asyncio.wait([self._tasks[0]])

    async def stop(self) -> None:
        """Stops the watcher and the batcher."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.batcher.stop()

    async def check_for_new_version(self) -> bool:
        """Loads and switches to the version ``latest`` names, if it is new and loads.

        The watcher calls it every ``poll_interval_s`` seconds; tests call it directly.

        Returns:
            Whether the served version changed.
        """
        async with self._swap_lock:
            target = self._target()
            if target is None:
                return False
            version, path = target
            try:
                model = await asyncio.to_thread(load_model, path, version, warmup=self._warmup)
            except Exception as error:  # any failure keeps the old version
                self._failed.add(version)
                self.load_error = f"version {version} at {path}: {error}"
                self.metrics.load_failures.inc()
                # A broken export is the operator's to fix, and its message says how; a
                # traceback is logged only for what load_index does not expect.
                expected = isinstance(error, (OSError, ValueError, ImportError, RuntimeError))
                logger.error("Could not load %s; still serving version %s.", self.load_error,
                             self.model.version if self.model else "none",
                             exc_info=None if expected else error)
                return False
            self.model = model  # the switch: one reference, read once per batch
            self.metrics.model_version.set(version)
            self.metrics.model_loads.inc()
            self.metrics.model.info({"version": str(version), "path": str(path)})
            logger.info("Serving version %d from %s.", version, path)
            return True

    def _target(self) -> tuple[int, Path] | None:
        """The version to load next and its folder, or ``None`` when there is none."""
        if not self.versioned:
            return None if self.model is not None or self._failed else (0, self.directory)
        try:
            version = latest_version(self.directory)
        except ValueError as error:
            if self.load_error != str(error):
                self.metrics.load_failures.inc()
                logger.error("Ignoring the version pointer: %s", error)
            self.load_error = str(error)
            return None
        current = self.model.version if self.model is not None else None
        if version is None or version == current or version in self._failed:
            return None
        return version, version_path(self.directory, version)

    async def answer(self, queries: Sequence[Query]) -> list[Answer | RequestError]:
        """The answers to ``queries``, each computed in some batch.

        A request of several queries is refused whole (503) unless they all fit in the
        queue now, so it is never half answered.
        """
        if len(queries) == 1:
            return [await self.batcher.submit(queries[0])]
        if not self.batcher.has_room(len(queries)):
            if len(queries) > self.batcher.max_queue:
                raise RequestError(422, "instances", f"`instances` must hold at most "
                                   f"{self.batcher.max_queue} queries (the server's "
                                   f"max_queue). Received: {len(queries)}. Send them in "
                                   "several requests.")
            return [_overloaded("queue")] * len(queries)
        return list(await asyncio.gather(*(self.batcher.submit(q) for q in queries)))

    async def answer_one(self, query: Query) -> Answer | RequestError:
        """The answer to ``query``, computed in some batch (no task of its own)."""
        return await self.batcher.submit(query)  # type: ignore[no-any-return]

    async def answer_with(self, query: Query, version: int) -> Answer | RequestError:
        """``query`` answered by ``version`` (one present in ``DIR/versions``), unbatched."""
        model = await self.model_for(version)
        if model is self.model:
            return await self.answer_one(query)
        return (await asyncio.to_thread(run_batch, model, [query]))[0]

    async def model_for(self, version: int) -> ServedModel:
        """Version ``version``: the served one, or one loaded on demand and kept a while.

        Raises:
            RequestError: 404 when the version is not in ``DIR/versions``; 500 when it
                does not load.
        """
        current = self.model
        if current is not None and current.version == version:
            return current
        present = available_versions(self.directory) if self.versioned else []
        if version not in present:
            raise RequestError(404, "version", f"`version` must be one of the versions in "
                               f"{self.directory / 'versions'}: {present or 'none'}. "
                               f"Received: version={version}.")
        async with self._pin_lock:
            if version not in self._pinned:
                path = version_path(self.directory, version)
                try:
                    model = await asyncio.to_thread(load_model, path, version,
                                                    warmup=self._warmup)
                except Exception as error:
                    logger.error("Could not load version %d at %s", version, path,
                                 exc_info=error)
                    raise RequestError(500, "version", f"Version {version} could not be "
                                       "loaded; the reason is logged on the server.") from error
                self._pinned[version] = model
                while len(self._pinned) > PINNED_VERSIONS:
                    del self._pinned[next(iter(self._pinned))]
            return self._pinned[version]

    def _run(self, queries: Sequence[Query]) -> list[Answer | RequestError]:
        model = self.model  # read once: the whole batch runs on this version
        if model is None:
            return [RequestError(503, "model", "No model is loaded yet.")] * len(queries)
        self.metrics.batch_size.observe(len(queries))
        return run_batch(model, queries)

    async def _watch(self, first: asyncio.Task[bool]) -> None:
        await asyncio.wait([first])
        if not self.versioned or self.poll_interval_s <= 0:
            return  # nothing to poll: the first load was all
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.check_for_new_version()
            except Exception:  # the watcher must outlive any one failure
                logger.exception("Checking for a new version failed")


def _overloaded(reason: str) -> RequestError:
    """The 503 of a query refused by a full queue or not answered in time."""
    why = ("too many queries are waiting (max_queue)" if reason == "queue" else
           "it was not answered within the server's request timeout (request_timeout_s)")
    return RequestError(503, "server", f"The server is overloaded: {why}. Retry after "
                        f"{RETRY_AFTER_S} s, or with another replica.",
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _internal_error(error: BaseException) -> RequestError:
    return RequestError(500, "server", "The server could not answer this query; it is "
                        "logged on the server.")
