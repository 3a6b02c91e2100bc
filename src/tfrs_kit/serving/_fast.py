"""The query routes' work, and a plain-ASGI hot path that runs it ahead of FastAPI.

``POST /v1/recommend`` and ``POST /v1/models/<name>:predict`` are the requests a server
answers by the thousand, so :class:`HotPath` answers them straight from the ASGI
scope: the body read with its size limit, JSON parsed (orjson when it is installed),
the request checked by :mod:`~tfrs_kit.serving._requests`, the answer encoded and
sent, each request counted and timed. FastAPI's stack (its middlewares, routing,
dependency solving and telemetry) costs several times more per request, measured in
``benchmarks/serving_load.py``. FastAPI still holds the same routes (they call the
functions here), so the OpenAPI schema lists them and every other path is FastAPI's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tfrs_kit._errors import invalid_argument
from tfrs_kit.serving._model import Answer, ServedModel
from tfrs_kit.serving._requests import (
    RequestError,
    parse_json,
    predict_queries,
    recommend_query,
    requested_version,
)
from tfrs_kit.serving._server import Server

try:  # optional: about 5x faster than json on the answers' lists of floats
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

__all__ = ["HotPath", "dumps", "predict", "read_body", "recommend"]

logger = logging.getLogger("tfrs_kit.serving")

RECOMMEND = "/v1/recommend"
PREDICT = "/v1/models/{model}:predict"
_MODELS, _PREDICT_SUFFIX = "/v1/models/", ":predict"
INTERNAL_ERROR = {"error": "Internal error; it is logged on the server."}

Payload = tuple[dict[str, Any], str]  # the answer's JSON, its X-Model-Version header


def dumps(payload: Any) -> bytes:
    """``payload`` as compact JSON bytes (as Starlette's ``JSONResponse`` writes it)."""
    if orjson is not None:
        return bytes(orjson.dumps(payload))
    return json.dumps(payload, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


def served_model(server: Server) -> ServedModel:
    """The version served, or a 503 while none is loaded."""
    model = server.model
    if model is None:
        raise RequestError(503, "model", "The model is not loaded yet: retry when "
                           "GET /readyz answers 200.")
    return model


def _checked(answers: list[Answer | RequestError]) -> list[Answer]:
    for answer in answers:
        if isinstance(answer, RequestError):
            raise answer
    return answers  # type: ignore[return-value]


async def recommend(server: Server, body: bytes) -> Payload:
    """``POST /v1/recommend``: one query's top ``k`` and the version that answered."""
    model = served_model(server)
    payload = parse_json(body)
    query = recommend_query(payload, model.spec)
    version = requested_version(payload)
    answer = (await server.answer_one(query) if version is None
              else await server.answer_with(query, version))
    [checked] = _checked([answer])
    payload = {"ids": checked.ids, "scores": checked.scores, "version": checked.version}
    if checked.explanations is not None:  # asked for with "explain": true
        payload["explanations"] = checked.explanations
    return payload, str(checked.version)


async def predict(server: Server, name: str, model_name: str, body: bytes) -> Payload:
    """``POST /v1/models/<name>:predict``: TF Serving's REST shape, top ``k_max`` each."""
    if model_name != name:
        raise RequestError(404, "model", str(invalid_argument(
            "model", f"be the served model's name, {name!r}", model_name)))
    served = served_model(server)
    queries = predict_queries(parse_json(body), served.spec)
    answers = _checked(await server.answer(queries))
    versions = sorted({a.version for a in answers})
    return ({"predictions": [{"ids": a.ids, "scores": a.scores} for a in answers]},
            ",".join(str(v) for v in versions))


class Disconnected(Exception):
    """The client went away before its request body was complete."""


def too_large(limit: int) -> RequestError:
    return RequestError(413, "body", f"The request body must be at most {limit} bytes. "
                        "Send fewer queries per request, or raise `max_body_bytes`.")


async def read_body(scope: Any, receive: Callable[[], Awaitable[Any]], limit: int) -> bytes:
    """The body of an ASGI HTTP request, refused with 413 once it passes ``limit``.

    Raises:
        RequestError: 413, from the declared ``content-length`` or the bytes received.
        Disconnected: The client went away first.
    """
    for header, value in scope["headers"]:
        if header == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def route_path(scope: Any) -> str:
    """The path the app routes on (without a mount's ``root_path``), as Starlette does."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path != root and path[len(root)] == "/":
        return path[len(root):]
    return path


class HotPath:
    """Answers the two query routes from the ASGI scope; anything else goes to ``app``.

    Args:
        app: The FastAPI app's own ``__call__`` (everything but the two routes).
        server: The app's state.
        name: The served model's name (the ``<name>`` of the predict route).
        limit: The largest request body, in bytes.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, server: Server, name: str,
                 limit: int) -> None:
        self.app = app
        self.server = server
        self.name = name
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path == RECOMMEND:
            await self._answer(RECOMMEND, scope, receive, send,
                               lambda body: recommend(self.server, body))
        elif path.startswith(_MODELS) and path.endswith(_PREDICT_SUFFIX):
            model = path[len(_MODELS):-len(_PREDICT_SUFFIX)]
            await self._answer(PREDICT, scope, receive, send,
                               lambda body: predict(self.server, self.name, model, body))
        else:
            await self.app(scope, receive, send)

    async def _answer(self, endpoint: str, scope: Any, receive: Any, send: Any,
                      handle: Callable[[bytes], Awaitable[Payload]]) -> None:
        started = time.perf_counter()
        try:
            payload, version = await handle(await read_body(scope, receive, self.limit))
            status, body, extra = 200, dumps(payload), [(b"x-model-version", version.encode())]
        except RequestError as error:
            status, body = error.status, dumps(error.to_json())
            extra = [(name.lower().encode(), value.encode())
                     for name, value in error.headers.items()]
        except Disconnected:
            status, body = 499, b""  # nobody to answer: counted, not sent
        except Exception:  # logged here; the client gets no traceback
            logger.exception("Unexpected error answering POST %s", scope.get("path"))
            status, body, extra = 500, dumps(INTERNAL_ERROR), []
        if status != 499:
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
        metrics = self.server.metrics
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
