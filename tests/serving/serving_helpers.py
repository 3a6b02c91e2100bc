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
