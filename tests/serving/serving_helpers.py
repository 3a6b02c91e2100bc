"""Helpers for the serving tests: a started app's client and the answers it must give."""

import contextlib

import numpy as np

ITEMS = ["i1", "i2", "i3", "i4", "i5", "i6"]


@contextlib.asynccontextmanager
async def running(api):
    """The app started (lifespan), its first version loaded, and a client for it."""
    import httpx  # the serve extra's test client

    async with api.router.lifespan_context(api):
        await api.state.server.first_load()
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def expected(index, features, k, exclude=()):
    """The single-query answer of ``Index.recommend``, empty slots dropped."""
    table = {name: _column(value) for name, value in features.items()}
    recs = index.recommend(table, k=k, exclude=[list(exclude)] if exclude else None)
    keep = np.isfinite(recs.scores[0])
    return recs.ids[0][keep].tolist(), recs.scores[0][keep].tolist()


def _column(value):
    column = np.empty(1, dtype=object)
    column[0] = value
    return column


def assert_same(response_json, want):
    ids, scores = want
    assert response_json["ids"] == ids
    np.testing.assert_allclose(response_json["scores"], scores, rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def live(api):
    """``api`` served by uvicorn on a free 127.0.0.1 port in a thread: a real socket.

    Yields ``(host, port)`` once the first version is loaded; the server is stopped on
    the way out, whatever happens.
    """
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port,
                                           log_level="info", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120  # a bound on a loaded machine, not a measurement
        while not (server.started and api.state.server.ready):
            assert thread.is_alive() and time.monotonic() < deadline, "the server never started"
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def raw_exchange(address, request, *, read=True):
    """Sends ``request`` (bytes) on a new connection; returns the status and body read
    (``None`` with ``read=False``: the connection is closed at once, mid-request)."""
    import socket

    with socket.create_connection(address, timeout=60) as connection:
        connection.sendall(request)
        if not read:
            return None
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head[9:12]), body
