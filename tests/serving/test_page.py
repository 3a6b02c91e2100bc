"""The page (``GET /``), ``GET /v1/versions``, and ``"version": n`` in ``/v1/recommend``."""

import pytest
from serving_helpers import assert_same, expected, running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio

QUERY = {"user_id": "u3", "history": ["i2", "i4"]}


@pytest.fixture
def two_versions(versioned):
    """A versioned folder holding versions 1 and 2, ``latest`` at 1."""
    root, publish = versioned
    publish(2)
    serving.write_latest(root, 1)
    return root


async def test_the_page_is_plain_html_that_uses_the_api(saved_indexes):
    api = serving.app(saved_indexes[1], poll_interval_s=0, model_name="movies")
    async with running(api) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!doctype html>") and "<title>movies - tfrs_kit</title>" in page
    # Relative URLs (the app may sit behind a path prefix), and no external scripts.
    assert 'fetch("v1/versions")' in page and 'fetch("v1/recommend"' in page
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert page.count("<script>") == page.count("</script>") == 1


async def test_versions_lists_features_and_the_versions_present(two_versions):
    api = serving.app(two_versions, poll_interval_s=0, model_name="movies")
    async with running(api) as client:
        info = (await client.get("/v1/versions")).json()
    assert info["served"] == 1 and info["versions"] == [1, 2] and info["model"] == "movies"
    assert info["features"] == [
        {"name": "user_id", "kind": "categorical", "dtype": "string"},
        {"name": "history", "kind": "multi", "dtype": "string"}]
    assert info["k_limit"] == 5 and info["id_kind"] == "string"


async def test_any_present_version_answers_on_request(two_versions, reference):
    api = serving.app(two_versions, poll_interval_s=0)
    async with running(api) as client:
        for version in (None, 2, 1, 2):
            body = {**QUERY, "k": 4, **({"version": version} if version else {})}
            response = await client.post("/v1/recommend", json=body)
            assert response.status_code == 200, response.text
            served = version or 1
            assert response.json()["version"] == served
            assert response.headers["x-model-version"] == str(served)
            assert_same(response.json(), expected(reference[served], QUERY, 4))
        assert api.state.server.model.version == 1  # asking never switches the served one


async def test_an_absent_or_malformed_version_is_refused(two_versions, saved_indexes):
    api = serving.app(two_versions, poll_interval_s=0)
    async with running(api) as client:
        missing = await client.post("/v1/recommend", json={**QUERY, "version": 3})
        assert missing.status_code == 404
        assert missing.json()["field"] == "version" and "[1, 2]" in missing.json()["error"]
        for bad in ("2", 0, True, 1.5):
            response = await client.post("/v1/recommend", json={**QUERY, "version": bad})
            assert response.status_code == 422, bad
            assert response.json()["field"] == "version"
    plain = serving.app(saved_indexes[1], poll_interval_s=0)
    async with running(plain) as client:
        response = await client.post("/v1/recommend", json={**QUERY, "version": 1})
        assert response.status_code == 404 and response.json()["field"] == "version"
        assert (await client.get("/v1/versions")).json()["versions"] == [0]


def test_the_page_script_parses(tmp_path):
    import shutil
    import subprocess

    from tfrs_kit.serving._page import PAGE

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("needs Node.js to check the page's JavaScript")
    script = tmp_path / "page.js"
    script.write_text(PAGE.split("<script>")[1].split("</script>")[0])
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stderr
