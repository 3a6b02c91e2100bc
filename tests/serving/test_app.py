"""The endpoints answer as Index.recommend does, refuse bad input with a 4xx naming the
field, and never leak a traceback: on the hot path and on FastAPI's routes alike."""

import json

import pytest
from serving_helpers import ITEMS, assert_same, expected, running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[True, False], ids=["hot_path", "fastapi"])
def plain_app(saved_indexes, request):
    return serving.app(saved_indexes[1], poll_interval_s=0, model_name="movies",
                       fast_path=request.param)


@pytest.fixture(scope="module", params=[True, False], ids=["hot_path", "fastapi"])
async def shared(saved_indexes, request):
    """One started app and its client for the tests that only read, once per path."""
    api = serving.app(saved_indexes[1], poll_interval_s=0, model_name="movies",
                      fast_path=request.param)
    assert (api.hot_path is not None) is request.param
    async with running(api) as client:
        yield api, client


async def test_recommend_equals_index_recommend(shared, reference):
    queries = [
        ({"user_id": "u1"}, 3, []),
        ({"user_id": "u2", "history": ["i1", "i2"]}, 5, ["i3"]),
        ({"user_id": "never-seen", "history": ["i4"]}, 2, []),
    ]
    _, client = shared
    for features, k, exclude in queries:
        body = {**features, "k": k, "exclude": exclude}
        if "history" not in features:
            body["history"] = ["i1"]
            features = {**features, "history": ["i1"]}
        response = await client.post("/v1/recommend", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 0  # a plain index folder
        assert response.headers["x-model-version"] == "0"
        assert_same(response.json(), expected(reference[1], features, k, exclude))


async def test_a_new_user_may_send_only_a_history(shared, reference):
    _, client = shared
    response = await client.post("/v1/recommend", json={"history": ["i2", "i5"], "k": 4})
    assert response.status_code == 200, response.text
    # The omitted user id is served as an id outside the vocabulary.
    assert_same(response.json(), expected(reference[1], {"user_id": "[UNK]",
                                                        "history": ["i2", "i5"]}, 4))


async def test_exclusions_leave_items_out_and_unknown_ones_are_ignored(shared):
    _, client = shared
    response = await client.post("/v1/recommend", json={
        "user_id": "u1", "history": ["i1"], "k": 5,
        "exclude": ["i1", "i2", "i3", "no-such-item"]})
    assert response.status_code == 200, response.text
    assert set(response.json()["ids"]) == set(ITEMS) - {"i1", "i2", "i3"}


async def test_predict_has_tf_servings_rest_shape(shared, reference):
    instances = [{"user_id": "u1", "history": ["i1"]}, {"user_id": "u3", "history": ["i6"]}]
    _, client = shared
    response = await client.post("/v1/models/movies:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for instance, prediction in zip(instances, predictions, strict=True):
        assert_same(prediction, expected(reference[1], instance, 5))  # k_max
    assert response.headers["x-model-version"] == "0"  # the version in every answer


async def test_a_known_user_may_leave_the_history_out(shared, reference):
    _, client = shared
    response = await client.post("/v1/recommend", json={"user_id": "u3", "k": 4})
    assert response.status_code == 200, response.text
    # An omitted history is an empty one: a user with no history yet.
    assert_same(response.json(), expected(reference[1], {"user_id": "u3", "history": []}, 4))


async def test_health_readiness_and_metrics(plain_app):
    transport_before = await _get_without_start(plain_app, "/readyz")
    assert transport_before.status_code == 503  # not loaded before the app starts
    async with running(plain_app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["version"] == 0
        await client.post("/v1/recommend", json={"user_id": "u1", "history": ["i1"]})
        await client.post("/v1/recommend", json={"user_id": 1})
        text = (await client.get("/metrics")).text
    assert 'tfrs_kit_requests_total{endpoint="/v1/recommend",status="200"} 1.0' in text
    assert 'tfrs_kit_requests_total{endpoint="/v1/recommend",status="422"} 1.0' in text
    assert 'tfrs_kit_requests_total{endpoint="/v1/recommend",status="503"} 1.0' in text
    assert 'tfrs_kit_request_latency_seconds_count{endpoint="/v1/recommend"} 3.0' in text
    assert "tfrs_kit_batch_size_count" in text
    assert "tfrs_kit_model_version 0.0" in text
    assert "tfrs_kit_model_load_failures_total 0.0" in text


async def _get_without_start(api, path):
    import httpx

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        not_ready = await client.post("/v1/recommend", json={"user_id": "u1"})
        assert not_ready.status_code == 503 and "readyz" in not_ready.json()["error"]
        return await client.get(path)


GOOD = {"user_id": "u1", "history": ["i1"]}
BAD_RECOMMEND = [
    # (body, status, field, words the message must hold)
    (b"{not json", 400, "body", "valid JSON"),
    (b"[1, 2]", 422, "body", "JSON object"),
    ({**GOOD, "usr_id": "u1"}, 422, "usr_id", "not a field"),
    ({**GOOD, "k": 0}, 422, "k", "from 1 to 5"),
    ({**GOOD, "k": 6}, 422, "k", "k_max=5"),
    ({**GOOD, "k": "3"}, 422, "k", "integer"),
    ({**GOOD, "k": True}, 422, "k", "integer"),
    ({**GOOD, "user_id": 7}, 422, "user_id", "string id"),
    ({**GOOD, "history": []}, 422, "history", "non-empty list"),
    ({**GOOD, "history": "i1"}, 422, "history", "list"),
    ({**GOOD, "history": ["i1", 2]}, 422, "history[1]", "string id"),
    ({**GOOD, "exclude": "i1"}, 422, "exclude", "list of candidate ids"),
    ({**GOOD, "exclude": [3]}, 422, "exclude[0]", "string id"),
    ({"k": 3}, 422, "user_id", "features the index reads"),
    (b"null", 422, "body", "JSON object"),
    (b"[" * 100_000, 400, "body", "nested"),
    (b'{"user_id": "u1"', 400, "body", "valid JSON"),
    (b"\xff\xfe", 400, "body", "valid JSON"),
    ({**GOOD, "k": 2.0}, 422, "k", "integer"),
    ({**GOOD, "k": -1}, 422, "k", "from 1 to 5"),
    ({**GOOD, "k": None, "version": "2"}, 422, "version", "version number"),
    ({**GOOD, "exclude": None}, 422, "exclude", "list of candidate ids"),
    ({**GOOD, "user_id": ["u1"]}, 422, "user_id", "string id"),
    ({**GOOD, "history": [["i1"]]}, 422, "history[0]", "string id"),
    # An unknown user without a history: the model knows nothing of the query.
    ({"user_id": "stranger"}, 422, "user_id", "send `history`"),
    # A history of unknown items, from a user the model does not know either.
    ({"user_id": "stranger", "history": ["x1", "x2"]}, 422, "history", "none of its ids"),
    ({"history": ["x1"]}, 422, "history", "none of its ids"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), BAD_RECOMMEND,
                         ids=[str(b)[:40] for b, *_ in BAD_RECOMMEND])
async def test_bad_recommend_requests_get_a_4xx_naming_the_field(shared, body, status,
                                                                 field, words):
    _, client = shared
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post("/v1/recommend", content=content)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert words in response.json()["error"]
    assert f"`{field}`" in response.json()["error"] or field == "body"
    assert "Traceback" not in response.text
    assert response.headers["content-type"] == "application/json"
    assert (await client.post("/v1/recommend", json=GOOD)).status_code == 200


BAD_PREDICT = [
    ("/v1/models/other:predict", {"instances": [GOOD]}, 404, "model"),
    ("/v1/models/movies:predict", {"instances": []}, 422, "instances"),
    ("/v1/models/movies:predict", {"inputs": [GOOD]}, 422, "inputs"),
    ("/v1/models/movies:predict", {"instances": [{**GOOD, "k": 3}]}, 422, "instances[0].k"),
    ("/v1/models/movies:predict", {"instances": [GOOD, {**GOOD, "user_id": 1}]}, 422,
     "instances[1].user_id"),
    ("/v1/models/movies:predict", {"instances": [GOOD], "signature_name": "x"}, 422,
     "signature_name"),
    ("/v1/models/movies:predict", {"instances": "u1"}, 422, "instances"),
    ("/v1/models/movies:predict", {"instances": [GOOD, {"user_id": "stranger"}]}, 422,
     "instances[1].user_id"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD_PREDICT,
                         ids=[f for *_, f in BAD_PREDICT])
async def test_bad_predict_requests_get_a_4xx_naming_the_field(shared, path, body, status,
                                                               field):
    _, client = shared
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert f"`{field}`" in response.json()["error"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["hot_path", "fastapi"])
async def test_a_body_over_the_limit_gets_413(saved_indexes, fast_path):
    api = serving.app(saved_indexes[1], poll_interval_s=0, max_body_bytes=200,
                      fast_path=fast_path)
    async with running(api) as client:
        big = {**GOOD, "exclude": ["i1"] * 100}
        response = await client.post("/v1/recommend", json=big)
        assert response.status_code == 413 and response.json()["field"] == "body"
        assert "200 bytes" in response.json()["error"]

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b" " * 50

        response = await client.post("/v1/recommend", content=chunks())
        assert response.status_code == 413
        assert (await client.post("/v1/recommend", json=GOOD)).status_code == 200


async def test_an_unexpected_error_is_a_500_without_traceback_and_serving_goes_on(shared):
    api, client = shared
    index = api.state.server.model.index

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    index.recommend = broken
    try:
        response = await client.post("/v1/recommend", json=GOOD)
    finally:
        del index.recommend
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert (await client.post("/v1/recommend", json=GOOD)).status_code == 200


def test_settings_are_checked(saved_indexes, tmp_path):
    with pytest.raises(ValueError, match="max_batch_size"):
        serving.app(saved_indexes[1], max_batch_size=0)
    with pytest.raises(TypeError, match="max_wait_ms"):
        serving.app(saved_indexes[1], max_wait_ms="5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serving.app(tmp_path / "missing")
    with pytest.raises(ValueError, match="model_name"):
        serving.app(saved_indexes[1], model_name="a/b")


def test_a_missing_extra_names_the_install_command(saved_indexes, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[serve\]"'):
        serving.app(saved_indexes[1])


def test_tfrs_kit_serving_is_a_lazy_optional_namespace():
    import tfrs_kit as tk

    assert tk.serving is serving
    assert "serving" not in tk.__all__  # `from tfrs_kit import *` works without the extra
    assert sorted(serving.__all__) == serving.__all__


async def test_integer_ids_are_json_integers(tmp_path):
    import tfrs_kit as tk

    vocabs = (tk.VocabularyBuilder().fit({"user": [1, 2, 3]})
              | tk.VocabularyBuilder().fit({"item": [10, 20, 30, 40]}))
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user"], output_dim=4),
                                 tk.Tower(vocabs, features=["item"], output_dim=4))
    index = tk.IndexBuilder(k_max=10, backend="brute_force").build(
        model, {"item": [10, 20, 30, 40]})  # k_max above the catalogue: k is up to 4
    index.save(tmp_path / "ints")
    async with running(serving.app(tmp_path / "ints", poll_interval_s=0)) as client:
        served = await client.post("/v1/recommend", json={"user": 2, "k": 3, "exclude": [20]})
        as_string = await client.post("/v1/recommend", json={"user": "2"})
        bad_exclude = await client.post("/v1/recommend", json={"user": 2, "exclude": ["20"]})
        new_user = await client.post("/v1/recommend", json={"user": 99, "k": 1})
        known_user = await client.post("/v1/recommend", json={"user": 3, "k": 1})
        above_the_index = await client.post("/v1/recommend", json={"user": 3, "k": 5})
    assert served.status_code == 200, served.text
    want = index.recommend({"user": [2]}, k=3, exclude=[[20]])
    assert served.json()["ids"] == [i for i in want.ids[0].tolist() if i != -1]
    assert 20 not in served.json()["ids"]
    assert as_string.status_code == 422 and as_string.json()["field"] == "user"
    assert bad_exclude.status_code == 422 and bad_exclude.json()["field"] == "exclude[0]"
    # An unseen id, and no history to go on: refused, with what to do instead.
    assert new_user.status_code == 422 and new_user.json()["field"] == "user"
    assert "99" in new_user.json()["error"] and "another source" in new_user.json()["error"]
    assert known_user.status_code == 200
    assert above_the_index.status_code == 422 and above_the_index.json()["field"] == "k"
    assert "from 1 to 4 (k_max=10, 4 candidates)" in above_the_index.json()["error"]
