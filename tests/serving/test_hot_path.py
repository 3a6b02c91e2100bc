"""The plain-ASGI hot path answers as FastAPI's routes do, and survives what they survive."""

import json

import pytest
from serving_helpers import assert_same, expected, running

from tfrs_kit import serving
from tfrs_kit.serving._requests import parse_json

pytestmark = pytest.mark.anyio

BODY = {"user_id": "u2", "history": ["i1", "i3"], "k": 4, "exclude": ["i2"]}


async def _call(api, scope, messages):
    """Runs ``api`` on one raw ASGI request; returns the messages it sent."""
    sent, queue = [], list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await api({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
               "method": "POST", "scheme": "http", "query_string": b"", "root_path": "",
               "server": ("test", 80), "client": ("test", 1), "headers": [], **scope},
              receive, send)
    return sent


async def test_fastapi_routes_answer_as_the_hot_path_does(saved_indexes, reference):
    api = serving.app(saved_indexes[1], poll_interval_s=0, model_name="movies")
    async with running(api) as client:
        hot = await client.post("/v1/recommend", json=BODY)
        hot_predict = await client.post("/v1/models/movies:predict",
                                        json={"instances": [{"user_id": "u1"}]})
        hot_path, api.hot_path = api.hot_path, None  # FastAPI's own routes from here
        routed = await client.post("/v1/recommend", json=BODY)
        routed_predict = await client.post("/v1/models/movies:predict",
                                           json={"instances": [{"user_id": "u1"}]})
        refused = await client.post("/v1/recommend", json={**BODY, "k": 0})
        api.hot_path = hot_path
        refused_hot = await client.post("/v1/recommend", json={**BODY, "k": 0})
    features = {name: BODY[name] for name in ("user_id", "history")}
    assert_same(hot.json(), expected(reference[1], features, 4, ["i2"]))
    assert routed.json() == hot.json()
    assert routed.headers["x-model-version"] == hot.headers["x-model-version"] == "0"
    assert routed_predict.json() == hot_predict.json()
    assert refused.status_code == refused_hot.status_code == 422
    assert refused.json() == refused_hot.json() and refused.json()["field"] == "k"


async def test_a_client_gone_mid_body_is_counted_and_the_server_keeps_serving(
        saved_indexes):
    api = serving.app(saved_indexes[1], poll_interval_s=0)
    async with running(api) as client:
        sent = await _call(api, {"path": "/v1/recommend"}, [
            {"type": "http.request", "body": b'{"user_id": ', "more_body": True},
            {"type": "http.disconnect"}])
        after = await client.post("/v1/recommend", json=BODY)
        metrics = (await client.get("/metrics")).text
    assert sent == []  # nobody to answer
    assert after.status_code == 200
    assert 'tfrs_kit_requests_total{endpoint="/v1/recommend",status="499"} 1.0' in metrics


async def test_a_body_sent_in_chunks_is_read_whole_and_a_mount_prefix_is_routed(
        saved_indexes, reference):
    api = serving.app(saved_indexes[1], poll_interval_s=0)
    body = json.dumps(BODY).encode()
    async with running(api):
        sent = await _call(api, {"path": "/shop/v1/recommend", "root_path": "/shop"}, [
            {"type": "http.request", "body": body[:7], "more_body": True},
            {"type": "http.request", "body": body[7:], "more_body": False}])
    start, payload = sent
    assert start["status"] == 200
    assert (b"x-model-version", b"0") in start["headers"]
    features = {name: BODY[name] for name in ("user_id", "history")}
    assert_same(json.loads(payload["body"]), expected(reference[1], features, 4, ["i2"]))


@pytest.mark.parametrize("text", [
    '{"k": 3, "user_id": "u1"}', '{"k": NaN}', '{"k": 1e400}', '{"k": 123456789012345678901234}',
    '[1, 2.5, "\\u00e9", null, true]', '{"a": 1, "a": 2}'])
def test_bodies_parse_as_the_standard_library_parses_them(text):
    parsed, want = parse_json(text.encode()), json.loads(text)
    assert repr(parsed) == repr(want)  # repr: NaN == NaN, and 1 != 1.0


@pytest.mark.parametrize("text", ['{"k": ', "{'k': 1}", '{"k": 1}}', "\xff"])
def test_bodies_that_are_not_json_are_refused_as_the_standard_library_refuses_them(text):
    with pytest.raises(serving._requests.RequestError) as refused:
        parse_json(text.encode("latin-1"))
    assert refused.value.status == 400 and refused.value.field == "body"
