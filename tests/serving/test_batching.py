"""Concurrent requests are answered by fewer TensorFlow calls, each as if alone."""

import asyncio

import pytest
from serving_helpers import assert_same, expected, running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio


def _count_calls(index):
    """Wraps ``index.recommend`` (one TensorFlow call per batch here) to count its calls."""
    calls = []
    original = index.recommend

    def counted(table, **kwargs):
        calls.append(len(next(iter(table.values()))))
        return original(table, **kwargs)

    index.recommend = counted
    return calls


QUERIES = [({"user_id": f"u{1 + n % 4}", "history": ["i1", "i2", "i3"][: 1 + n % 3]},
            1 + n % 5, ["i6"] if n % 2 else []) for n in range(8)]


async def test_concurrent_requests_share_one_call_and_get_their_own_answer(saved_indexes,
                                                                           reference):
    # The batch closes when full: a wait far longer than the test makes the count exact.
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_batch_size=len(QUERIES),
                      max_wait_ms=600_000)
    async with running(api) as client:
        calls = _count_calls(api.state.server.model.index)
        responses = await asyncio.gather(*(
            client.post("/v1/recommend", json={**features, "k": k, "exclude": exclude})
            for features, k, exclude in QUERIES))
        metrics = (await client.get("/metrics")).text
    assert calls == [len(QUERIES)]  # one call, different k (the largest, then cut)
    for response, (features, k, exclude) in zip(responses, QUERIES, strict=True):
        assert response.status_code == 200, response.text
        assert len(response.json()["ids"]) <= k
        assert_same(response.json(), expected(reference[1], features, k, exclude))
    assert "tfrs_kit_batch_size_count 1.0" in metrics  # the warm-up is not a served batch
    assert f'tfrs_kit_batch_size_bucket{{le="{len(QUERIES)}.0"}} 1.0' in metrics
    assert 'tfrs_kit_batch_size_bucket{le="4.0"} 0.0' in metrics


async def test_batches_are_bounded_by_the_batch_size(saved_indexes, reference):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_batch_size=3,
                      max_wait_ms=600_000)
    async with running(api) as client:
        calls = _count_calls(api.state.server.model.index)
        bodies = [{**features, "k": k} for features, k, _ in QUERIES[:6]]
        responses = await asyncio.gather(*(client.post("/v1/recommend", json=b)
                                           for b in bodies))
    assert calls == [3, 3]
    for response, (features, k, _) in zip(responses, QUERIES, strict=False):
        assert_same(response.json(), expected(reference[1], features, k))


async def test_a_bad_query_in_a_batch_fails_alone(saved_indexes, reference):
    """A query that passes the HTTP checks but that the index refuses fails with its own
    4xx; the batch is run again query by query, and the others are answered."""
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_batch_size=3,
                      max_wait_ms=600_000)
    async with running(api) as client:
        index = api.state.server.model.index
        original = index.recommend

        def picky(table, **kwargs):  # refuses any batch holding user "u4"
            if "u4" in list(table["user_id"]):
                raise ValueError("`query_features['user_id']` must not be u4. Received: u4.")
            return original(table, **kwargs)

        index.recommend = picky
        bodies = [{"user_id": u, "history": ["i1"], "k": 2} for u in ("u1", "u4", "u2")]
        responses = await asyncio.gather(*(client.post("/v1/recommend", json=b)
                                           for b in bodies))
    assert [r.status_code for r in responses] == [200, 422, 200]
    assert responses[1].json()["field"] == "user_id"
    assert_same(responses[2].json(), expected(reference[1], {"user_id": "u2",
                                                             "history": ["i1"]}, 2))


async def test_no_wait_answers_a_lone_request(saved_indexes):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_batch_size=100, max_wait_ms=0)
    async with running(api) as client:
        response = await client.post("/v1/recommend", json={"user_id": "u1",
                                                            "history": ["i2"]})
    assert response.status_code == 200


async def test_a_lone_query_after_a_batch_of_one_does_not_wait():
    from tfrs_kit.serving._batcher import MicroBatcher

    sizes = []

    def run(items):
        sizes.append(len(items))
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=400, on_error=repr)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        assert await batcher.submit(1) == 10  # no batch yet: waits for company
        first = loop.time() - started
        started = loop.time()
        assert await batcher.submit(2) == 20  # after a batch of one: answered at once
        second = loop.time() - started
        assert await asyncio.gather(batcher.submit(3), batcher.submit(4)) == [30, 40]
    finally:
        await batcher.stop()
    assert first >= 0.4 > second
    assert sizes == [1, 1, 2]  # two concurrent queries still share a batch
