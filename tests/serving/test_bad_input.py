"""Bad input at the socket: bodies over the limit (read only up to it, chunked or not),
clients that go away mid-request; on the hot path and on FastAPI's routes, over raw ASGI
and over a real socket (uvicorn in a thread). The server keeps serving, and logs no
traceback for what a client did."""

import asyncio
import json
import logging
import threading

import pytest
from serving_helpers import live, raw_exchange, running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["hot_path", "fastapi"])
GOOD = json.dumps({"user_id": "u1", "history": ["i1"], "k": 2}).encode()


def _request(headers=b"", body=b""):
    return (b"POST /v1/recommend HTTP/1.1\r\nhost: test\r\ncontent-type: application/json"
            b"\r\n" + headers + b"\r\n" + body)


def _good_request():
    return _request(b"content-length: %d\r\n" % len(GOOD), GOOD)


async def _asgi(api, headers, chunks):
    """One raw ASGI request whose body comes in ``chunks``; returns (sent, chunks read)."""
    sent, queue, read = [], list(chunks), []

    async def receive():
        if not queue:
            return {"type": "http.disconnect"}
        read.append(queue.pop(0))
        return {"type": "http.request", "body": read[-1], "more_body": bool(queue)}

    async def send(message):
        sent.append(message)

    await api({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
               "method": "POST", "scheme": "http", "path": "/v1/recommend", "root_path": "",
               "query_string": b"", "server": ("test", 80), "client": ("test", 1),
               "headers": headers}, receive, send)
    return sent, read


@PATHS
async def test_a_body_is_read_only_up_to_the_limit(saved_indexes, fast_path):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_body_bytes=200,
                      fast_path=fast_path)
    async with running(api):
        # No Content-Length (chunked): refused as soon as 200 bytes are passed.
        sent, read = await _asgi(api, [], [b" " * 50] * 100)
        assert sent[0]["status"] == 413 and len(read) == 5
        assert json.loads(sent[1]["body"])["field"] == "body"
        # A declared length over the limit: refused before a byte is read.
        sent, read = await _asgi(api, [(b"content-length", b"5000")], [b" " * 50] * 100)
        assert sent[0]["status"] == 413 and read == []


def _no_traceback(records):
    logged = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not logged, [r.getMessage() for r in logged]


async def _count_of(api, status, want):
    """Waits (bounded) until ``want`` requests were answered (or counted) ``status``."""
    line = f'tfrs_kit_requests_total{{endpoint="/v1/recommend",status="{status}"}} {want}.0'
    for _ in range(600):  # at most ~60 s on a loaded machine
        if line in api.state.server.metrics.render().decode():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"never counted: {line}")


@PATHS
async def test_over_a_real_socket_bad_bodies_and_gone_clients_leave_the_server_serving(
        saved_indexes, fast_path, caplog):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_body_bytes=300,
                      fast_path=fast_path)
    caplog.set_level(logging.INFO)
    with live(api) as address:
        # Chunked, no Content-Length, over the limit: 413 while reading.
        chunked = b"".join(b"40\r\n" + b" " * 64 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
        status, body = raw_exchange(address, _request(b"transfer-encoding: chunked\r\n",
                                                      chunked))
        assert status == 413 and json.loads(body)["field"] == "body"
        # A client gone mid-body: counted as 499, nothing sent, nothing logged as error.
        raw_exchange(address, _request(b"content-length: 100\r\n", b'{"user_id": '),
                     read=False)
        await _count_of(api, 499, 1)
        # Malformed JSON, then a good request: the server keeps serving.
        assert raw_exchange(address, _request(b"content-length: 5\r\n", b"{oops"))[0] == 400
        assert raw_exchange(address, _good_request())[0] == 200
    _no_traceback(caplog.records)


@PATHS
async def test_a_client_gone_while_its_query_waits_leaves_the_server_serving(
        saved_indexes, fast_path, caplog):
    api = serving.app(saved_indexes[1], poll_interval_s=0, fast_path=fast_path)
    caplog.set_level(logging.INFO)
    with live(api) as address:
        index = api.state.server.model.index
        original, started, opened = index.recommend, threading.Event(), threading.Event()

        def slow(*args, **kwargs):  # holds the batch until the client has gone
            started.set()
            assert opened.wait(timeout=60)
            return original(*args, **kwargs)

        index.recommend = slow
        try:
            raw_exchange(address, _good_request(), read=False)
            assert started.wait(timeout=60)
        finally:
            opened.set()
        await _count_of(api, 200, 1)  # answered to nobody, without an error
        del index.recommend
        assert raw_exchange(address, _good_request())[0] == 200
    _no_traceback(caplog.records)
