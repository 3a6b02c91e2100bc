"""A new version is loaded beside the old one and switched to at once; a broken one is
refused while the old one keeps serving. The watcher's poll is called directly."""

import asyncio

import pytest
from serving_helpers import assert_same, expected, running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio

QUERY = {"user_id": "u2", "history": ["i1", "i3"]}


async def _served(client, k=5):
    response = await client.post("/v1/recommend", json={**QUERY, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_versioned_layout(tmp_path):
    assert serving.latest_version(tmp_path) is None
    serving.write_latest(tmp_path, 12)
    assert (tmp_path / "latest").read_text() == "12\n"
    assert serving.latest_version(tmp_path) == 12
    assert serving.version_path(tmp_path, 12) == tmp_path / "versions" / "12" / "index"
    (tmp_path / "latest").write_text("twelve")
    with pytest.raises(ValueError, match="version number"):
        serving.latest_version(tmp_path)


async def test_a_new_version_is_served_after_the_watcher_polls(versioned, reference):
    root, publish = versioned
    api = serving.app(root, poll_interval_s=0)
    async with running(api) as client:
        server = api.state.server
        first = await _served(client)
        assert first["version"] == 1
        assert_same(first, expected(reference[1], QUERY, 5))
        assert not await server.check_for_new_version()  # nothing new yet

        publish(2)
        assert (await _served(client))["version"] == 1  # not before the poll
        assert await server.check_for_new_version()
        second = await _served(client)
        ready = (await client.get("/readyz")).json()
        metrics = (await client.get("/metrics")).text
    assert second["version"] == 2 and ready["version"] == 2
    assert_same(second, expected(reference[2], QUERY, 5))
    assert second["ids"] != first["ids"] or second["scores"] != first["scores"]
    assert "tfrs_kit_model_version 2.0" in metrics
    assert "tfrs_kit_model_loads_total 2.0" in metrics


async def test_no_request_fails_during_the_switch(versioned, reference):
    root, publish = versioned
    api = serving.app(root, poll_interval_s=0, max_batch_size=4, max_wait_ms=1)
    async with running(api) as client:
        publish(2)
        requests = [client.post("/v1/recommend", json={**QUERY, "k": 1 + n % 5})
                    for n in range(40)]
        responses = await asyncio.gather(
            *requests[:20], api.state.server.check_for_new_version(), *requests[20:])
        after = await _served(client)
    assert responses.pop(20) is True, api.state.server.load_error  # switched meanwhile
    for n, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body = response.json()
        # Each answer is the one of the version it names.
        assert_same(body, expected(reference[body["version"]], QUERY, 1 + n % 5))
    assert after["version"] == 2


@pytest.mark.parametrize("damage", ["empty folder", "corrupt metadata", "missing folder"])
async def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(versioned, damage,
                                                                         reference, caplog):
    root, publish = versioned
    api = serving.app(root, poll_interval_s=0)
    caplog.set_level("INFO", logger="tfrs_kit.serving")
    async with running(api) as client:
        publish(2)
        assert await api.state.server.check_for_new_version()
        target = serving.version_path(root, 3)
        if damage == "empty folder":
            target.mkdir(parents=True)
        elif damage == "corrupt metadata":
            publish(3, source=serving.version_path(root, 2))
            (target / "tfrs_kit_index.json").write_text("{not json")
        serving.write_latest(root, 3)
        assert not await api.state.server.check_for_new_version()
        assert not await api.state.server.check_for_new_version()  # not retried
        body = await _served(client)
        metrics = (await client.get("/metrics")).text
        ready = await client.get("/readyz")
    assert body["version"] == 2
    assert_same(body, expected(reference[2], QUERY, 5))
    assert "tfrs_kit_model_load_failures_total 1.0" in metrics
    assert "tfrs_kit_model_version 2.0" in metrics
    assert ready.status_code == 200 and ready.json()["version"] == 2
    # The log says which version failed, why, and that the old one serves on: one line,
    # no traceback (a broken export is the operator's to fix, and the message says how).
    [refusal] = [r for r in caplog.records if r.levelname == "ERROR"]
    message = refusal.getMessage()
    assert "Could not load version 3" in message and "still serving version 2" in message
    assert str(target) in message and refusal.exc_info is None


async def test_an_unreadable_pointer_keeps_the_version_served(versioned):
    root, _ = versioned
    api = serving.app(root, poll_interval_s=0)
    async with running(api) as client:
        (root / "latest").write_text("not a number")
        assert not await api.state.server.check_for_new_version()
        assert (await _served(client))["version"] == 1
        metrics = (await client.get("/metrics")).text
    assert "tfrs_kit_model_load_failures_total 1.0" in metrics


async def test_a_first_version_that_fails_leaves_the_server_unready(versioned, saved_indexes):
    root, publish = versioned
    serving.version_path(root, 2).mkdir(parents=True)
    serving.write_latest(root, 2)  # the first version read is broken
    api = serving.app(root, poll_interval_s=0)
    async with running(api) as client:
        ready = await client.get("/readyz")
        refused = await client.post("/v1/recommend", json=QUERY)
        publish(3, source=saved_indexes[1])  # a fixed version arrives
        assert await api.state.server.check_for_new_version()
        assert (await client.get("/readyz")).status_code == 200
        assert (await _served(client))["version"] == 3
    assert ready.status_code == 503 and "version 2" in ready.json()["error"]
    assert refused.status_code == 503


async def test_the_watcher_polls_by_itself(versioned):
    """The background watcher calls check_for_new_version every poll_interval_s."""
    root, publish = versioned
    api = serving.app(root, poll_interval_s=0.01)
    async with running(api) as client:
        publish(2)
        for _ in range(3000):  # bounded: at most ~30 s on a loaded machine
            if api.state.server.model.version == 2:
                break
            await asyncio.sleep(0.01)
        assert (await _served(client))["version"] == 2


def test_a_query_checked_against_one_version_is_checked_again_on_another(tmp_path, reference):
    """A batch runs on the version current when it starts; a query accepted by the
    previous version is checked again, and refused alone if the new one reads other
    features."""
    import tfrs_kit as tk
    from tfrs_kit.serving._model import load_model, run_batch, spec_of
    from tfrs_kit.serving._requests import RequestError, recommend_query

    vocabs = tk.VocabularyBuilder().fit({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"]})
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    tk.IndexBuilder(k_max=2).build(model, {"item_id": ["i1", "i2"]}).save(tmp_path / "ids")
    other = load_model(tmp_path / "ids", 7)
    old_spec = spec_of(reference[1])
    with_history = recommend_query({**QUERY, "k": 2}, old_spec)
    user_only = recommend_query({"user_id": "u1", "k": 2}, other.spec)
    refused, answered = run_batch(other, [with_history, user_only])
    assert isinstance(refused, RequestError) and refused.field == "history"
    assert answered.version == 7 and len(answered.ids) == 2
