"""The HTTP app: routes, request size limit, error responses and metrics."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import contextlib
import functools
import importlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_int, check_number
from tfrs_kit.serving import _fast
from tfrs_kit.serving._metrics import Metrics
from tfrs_kit.serving._page import add_page_routes
from tfrs_kit.serving._requests import RequestError
from tfrs_kit.serving._server import Server

__all__ = ["app"]

logger = logging.getLogger("tfrs_kit.serving")

INSTALL_HINT = 'Install the server with `pip install "tfrs-kit[serve]"`.'
_MODULES = {"fastapi": "fastapi", "prometheus_client": "prometheus-client"}


def _require() -> tuple[Any, Any]:
    """FastAPI and prometheus_client, or an ImportError that says how to install them."""
    found = []
    for module, package in _MODULES.items():
        try:
            found.append(importlib.import_module(module))
        except ImportError as error:
            raise ImportError(f"tfrs_kit.serving needs {package}. {INSTALL_HINT}") from error
    return found[0], found[1]


def app(
    directory: str | os.PathLike[str],
    *,
    max_batch_size: int = 64,
    max_wait_ms: float = 2.0,
    poll_interval_s: float = 10.0,
    max_body_bytes: int = 1 << 20,
    model_name: str | None = None,
    warmup: Mapping[str, Any] | None = None,
    max_queue: int = 1024,
    request_timeout_s: float = 10.0,
    fast_path: bool = True,
) -> Any:
    """A FastAPI (ASGI) app that serves the index in ``directory`` over HTTP.

    Run it with any ASGI server (``uvicorn.run(app(...))``), or with ``tfrs-kit serve``.
    Loading starts with the app (its lifespan): ``GET /readyz`` answers 503 until the
    first version is loaded and has answered a warm-up query.

    Args:
        directory: An index directory written by :meth:`~tfrs_kit.Index.save`, or a
            versioned folder (``DIR/latest`` holds ``n``, the index is in
            ``DIR/versions/<n>/index/``; see ``docs/serving.md``).
        max_batch_size: The most queries answered by one TensorFlow call.
        max_wait_ms: How long a query waits for others to join its batch.
        poll_interval_s: How often ``DIR/latest`` is read for a new version (0: never).
        max_body_bytes: Larger request bodies are refused with 413.
        model_name: The ``<name>`` of ``POST /v1/models/<name>:predict`` (default:
            the directory's name).
        warmup: The query features of the warm-up query (default: each feature's most
            frequent token); give one when the query tower reads vectors.
        max_queue: The most queries waiting for a batch (0: no bound). Beyond it a
            request is answered 503 with ``Retry-After`` at once, so latency stays
            about ``max_queue / throughput`` instead of growing without bound.
        request_timeout_s: A query not answered within this many seconds is answered
            503 with ``Retry-After`` (0: no limit).
        fast_path: Answer the two query routes with the plain-ASGI hot path (below);
            ``False`` sends them through FastAPI's stack and its middleware.

    Returns:
        The app. ``app.state.server`` holds its state: ``.model`` (the version served,
        ``None`` before the first load), ``.metrics``, and ``await
        .check_for_new_version()``, which polls ``DIR/latest`` at once (as the watcher
        does every ``poll_interval_s``) and returns whether the version changed.

    Note:
        ``POST /v1/recommend`` and ``POST /v1/models/<name>:predict`` are answered by a
        plain-ASGI hot path ahead of FastAPI's stack (several times less CPU per
        request), so middleware added with ``add_middleware`` does not see them; wrap
        the app instead (``YourMiddleware(api)``), or pass ``fast_path=False`` to send
        them through FastAPI's routes, which answer the same.

    Raises:
        ImportError: FastAPI or prometheus-client is missing (the ``serve`` extra).
        FileNotFoundError: ``directory`` is not a folder.

    Example:
        >>> from tfrs_kit import serving
        >>> api = serving.app("exports/movies", max_wait_ms=5)  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(api, port=8000)  # doctest: +SKIP
    """
    fastapi, prometheus = _require()
    settings = {
        "max_batch_size": check_int("max_batch_size", max_batch_size, minimum=1),
        "max_wait_ms": check_number("max_wait_ms", max_wait_ms, minimum=0),
        "poll_interval_s": check_number("poll_interval_s", poll_interval_s, minimum=0),
        "max_queue": check_int("max_queue", max_queue, minimum=0),
        "request_timeout_s": check_number("request_timeout_s", request_timeout_s, minimum=0),
    }
    max_body_bytes = check_int("max_body_bytes", max_body_bytes, minimum=1)
    root = _directory(directory)
    name = _model_name(model_name, root)
    server = Server(root, metrics=Metrics(prometheus), warmup=warmup, **settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    api = _app_class(fastapi)(title="tfrs_kit", lifespan=lifespan)
    if not isinstance(fast_path, bool):
        raise invalid_argument("fast_path", "be True or False", fast_path, error=TypeError)
    if fast_path:
        api.hot_path = _fast.HotPath(functools.partial(fastapi.FastAPI.__call__, api),
                                     server=server, name=name, limit=max_body_bytes)
    api.state.server = server
    _add_error_handling(api, fastapi, server)
    _add_model_routes(api, fastapi, server, name, max_body_bytes)
    _add_status_routes(api, fastapi, server, name)
    add_page_routes(api, fastapi, server, name)
    return api


def _directory(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise invalid_argument("directory", "be a str or os.PathLike naming a folder",
                               directory, error=TypeError)
    root = Path(directory)
    if not root.is_dir():
        raise invalid_argument(
            "directory", "be an index directory (Index.save) or a versioned model folder "
            "(DIR/latest, DIR/versions/<n>/index)", str(directory),
            hint="It does not exist." if not root.exists() else "It is a file.",
            error=FileNotFoundError)
    return root


def _model_name(model_name: Any, root: Path) -> str:
    name = root.resolve().name if model_name is None else model_name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise invalid_argument("model_name", "be letters, digits, '_', '.' or '-'",
                               model_name, hint="Pass model_name='movies'.")
    return name


def _app_class(fastapi: Any) -> Any:
    """FastAPI, with the query routes answered first by a plain-ASGI hot path."""

    class App(fastapi.FastAPI):  # type: ignore[misc,name-defined]
        """A FastAPI app whose ``hot_path`` answers ``POST`` queries (``_fast.HotPath``)."""

        hot_path: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if self.hot_path is None:
                await super().__call__(scope, receive, send)
            else:
                await self.hot_path(scope, receive, send)

    return App


async def _body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is longer than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _fast.too_large(limit)
    chunks, size = [], 0
    disconnect = importlib.import_module("starlette.requests").ClientDisconnect
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _fast.too_large(limit)
            chunks.append(chunk)
    except disconnect as error:
        raise _fast.Disconnected from error
    return b"".join(chunks)


def _add_model_routes(api: Any, fastapi: Any, server: Server, name: str, limit: int) -> None:
    """The query routes, for the OpenAPI schema and for a caller that skips the hot path."""
    responses = importlib.import_module("fastapi.responses")

    @api.post(_fast.RECOMMEND)
    async def recommend(request: fastapi.Request) -> Any:
        """The top ``k`` for one query (its features, ``k``, ``exclude``, ``version``)."""
        payload, version = await _fast.recommend(server, await _body(request, limit))
        return responses.JSONResponse(payload, headers={"X-Model-Version": version})

    @api.post(_fast.PREDICT)
    async def predict(model: str, request: fastapi.Request) -> Any:
        """TF Serving's REST predict: ``{"instances": [...]}`` to ``{"predictions": [...]}``."""
        payload, version = await _fast.predict(server, name, model,
                                               await _body(request, limit))
        return responses.JSONResponse(payload, headers={"X-Model-Version": version})


def _add_status_routes(api: Any, fastapi: Any, server: Server, name: str) -> None:
    responses = importlib.import_module("fastapi.responses")

    @api.get("/healthz")
    async def healthz() -> Any:
        """200 while the process is up."""
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Any:
        """200 once a version is loaded and warmed up, else 503."""
        model = server.model
        if model is None:
            return responses.JSONResponse(
                {"ready": False, "error": server.load_error}, status_code=503)
        return {"ready": True, "version": model.version, "model": name}

    @api.get("/metrics")
    async def metrics() -> Any:
        """The Prometheus metrics."""
        return fastapi.Response(server.metrics.render(),
                                media_type=server.metrics.content_type)


def _add_error_handling(api: Any, fastapi: Any, server: Server) -> None:
    """JSON errors (never a traceback), and each request counted and timed."""
    responses = importlib.import_module("fastapi.responses")

    @api.exception_handler(RequestError)
    async def refused(request: Any, error: RequestError) -> Any:
        return responses.JSONResponse(error.to_json(), status_code=error.status,
                                      headers=error.headers or None)

    @api.exception_handler(_fast.Disconnected)
    async def gone(request: Any, error: Exception) -> Any:
        return fastapi.Response(status_code=499)  # nobody reads it; counted as 499

    api.add_middleware(_CountAndTime, server=server, internal_error=responses.JSONResponse(
        {"error": "Internal error; it is logged on the server."}, status_code=500))


class _CountAndTime:
    """Counts and times each request; an unexpected error becomes a JSON 500, logged.

    A plain ASGI middleware: ``@app.middleware("http")`` would run every request in an
    extra task with memory streams, a cost measured in ``benchmarks/serving_load.py``.
    """

    def __init__(self, app: Any, *, server: Server, internal_error: Any) -> None:
        self.app = app
        self.server = server
        self.internal_error = internal_error

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def noting_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        except Exception:  # logged here; the client gets no traceback
            logger.exception("Unexpected error answering %s %s", scope.get("method"),
                             scope.get("path"))
            if status:
                raise  # the response has begun: only the server can end it
            await self.internal_error(scope, receive, noting_status)
        endpoint = getattr(scope.get("route"), "path", "unmatched")
        metrics = self.server.metrics
        metrics.requests.labels(endpoint, str(status[0] if status else 500)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
