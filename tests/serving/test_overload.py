"""Overload: a bounded queue answers 503 with Retry-After at once instead of letting
latency grow, and a query not answered within the request timeout gets the same 503.

A gate (a threading.Event) holds the model's call, so which query waits where is
known, not timed."""

import asyncio
import threading

import pytest
from serving_helpers import running

from tfrs_kit import serving
from tfrs_kit.serving._batcher import MicroBatcher

pytestmark = pytest.mark.anyio

GOOD = {"user_id": "u1", "history": ["i1"], "k": 2}
INSTANCE = {"user_id": "u1", "history": ["i1"]}


async def _until(condition):
    """Waits (bounded) for ``condition()``, set by another thread."""
    for _ in range(6000):  # at most ~60 s on a loaded machine
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition never became true")


class Gate:
    """A run (or index.recommend) that blocks until opened, counting its calls."""

    def __init__(self, run):
        self.run, self.opened, self.calls = run, threading.Event(), []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        assert self.opened.wait(timeout=60)
        return self.run(*args, **kwargs)


async def test_a_full_queue_refuses_at_once_and_the_queued_are_answered():
    gate = Gate(lambda items: [item * 10 for item in items])
    batcher = MicroBatcher(gate, max_batch_size=1, max_wait_ms=0, on_error=repr,
                           max_queue=2, on_overload=lambda why: f"refused: {why}")
    try:
        first = asyncio.ensure_future(batcher.submit(1))
        await _until(lambda: len(gate.calls) == 1)  # running, out of the queue
        queued = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
        await asyncio.sleep(0)
        assert not batcher.has_room()
        assert await batcher.submit(4) == "refused: queue"  # at once: the gate is shut
        gate.opened.set()
        assert await first == 10 and await asyncio.gather(*queued) == [20, 30]
        assert batcher.has_room(2)
    finally:
        gate.opened.set()
        await batcher.stop()


async def test_a_query_past_its_timeout_is_answered_and_left_out_of_its_batch():
    gate = Gate(lambda items: [item * 10 for item in items])
    batcher = MicroBatcher(gate, max_batch_size=1, max_wait_ms=0, on_error=repr,
                           timeout_s=0.05, on_overload=lambda why: f"refused: {why}")
    try:
        first = asyncio.ensure_future(batcher.submit(1))
        await _until(lambda: len(gate.calls) == 1)
        assert await batcher.submit(2) == "refused: timeout"  # queued behind the gate
        assert await first == "refused: timeout"  # running: its late answer is dropped
        gate.opened.set()
        assert await batcher.submit(3) == 30
        assert [args[0] for args in gate.calls] == [[1], [3]]  # 2 never ran
    finally:
        gate.opened.set()
        await batcher.stop()


def _gated(api):
    index = api.state.server.model.index
    gate = Gate(index.recommend)
    index.recommend = gate
    return gate


@pytest.mark.parametrize("fast_path", [True, False], ids=["hot_path", "fastapi"])
async def test_the_server_answers_503_with_retry_after_when_its_queue_is_full(
        saved_indexes, fast_path):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_batch_size=1, max_wait_ms=0,
                      max_queue=1, fast_path=fast_path, model_name="movies")
    async with running(api) as client:
        gate = _gated(api)
        try:
            running_one = asyncio.ensure_future(client.post("/v1/recommend", json=GOOD))
            await _until(lambda: len(gate.calls) == 1)
            queued = asyncio.ensure_future(client.post("/v1/recommend", json=GOOD))
            await _until(lambda: not api.state.server.batcher.has_room())
            refused = await client.post("/v1/recommend", json=GOOD)
            too_many = await client.post("/v1/models/movies:predict",
                                         json={"instances": [INSTANCE] * 2})
        finally:
            gate.opened.set()
        answered = await asyncio.gather(running_one, queued)
        metrics = (await client.get("/metrics")).text
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["field"] == "server" and "max_queue" in refused.json()["error"]
    assert too_many.status_code == 422 and too_many.json()["field"] == "instances"
    assert [r.status_code for r in answered] == [200, 200]
    assert 'tfrs_kit_requests_total{endpoint="/v1/recommend",status="503"} 1.0' in metrics


@pytest.mark.parametrize("fast_path", [True, False], ids=["hot_path", "fastapi"])
async def test_a_request_not_answered_in_time_gets_503_and_serving_goes_on(saved_indexes,
                                                                          fast_path):
    api = serving.app(saved_indexes[1], poll_interval_s=0, request_timeout_s=0.05,
                      fast_path=fast_path)
    async with running(api) as client:
        gate = _gated(api)
        try:
            late = await client.post("/v1/recommend", json=GOOD)
        finally:
            gate.opened.set()
        api.state.server.batcher.timeout_s = 60  # no limit that a busy machine could hit
        after = await client.post("/v1/recommend", json=GOOD)
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert "request_timeout_s" in late.json()["error"]
    assert after.status_code == 200


def test_overload_settings_are_checked(saved_indexes):
    with pytest.raises(ValueError, match="max_queue"):
        serving.app(saved_indexes[1], max_queue=-1)
    with pytest.raises(ValueError, match="request_timeout_s"):
        serving.app(saved_indexes[1], request_timeout_s=-1)
    with pytest.raises(TypeError, match="fast_path"):
        serving.app(saved_indexes[1], fast_path="no")
    api = serving.app(saved_indexes[1])
    assert (api.state.server.batcher.max_queue, api.state.server.batcher.timeout_s) == (
        1024, 10.0)
