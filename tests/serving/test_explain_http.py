"""``"explain": true`` in ``POST /v1/recommend``: each item's explanation, on both paths."""

import numpy as np
import pytest
from serving_helpers import running

from tfrs_kit import serving

pytestmark = pytest.mark.anyio

QUERY = {"user_id": "u3", "history": ["i2", "i4", "i1"], "k": 3}


def _column(value):
    column = np.empty(1, dtype=object)
    column[0] = value
    return column


def _expected(index, query):
    """``Index.recommend(..., explain=True)``'s answer, as the server must give it."""
    table = {name: _column(query[name]) for name in ("user_id", "history")}
    served = index.recommend(table, k=query["k"], explain=True)
    return served.ids[0].tolist(), [e.to_dict() for e in served.explanations[0]]


@pytest.mark.parametrize("fast_path", [True, False], ids=["hot_path", "fastapi"])
async def test_explain_answers_each_items_explanation(saved_indexes, reference, fast_path):
    api = serving.app(saved_indexes[1], poll_interval_s=0, fast_path=fast_path)
    async with running(api) as client:
        response = await client.post("/v1/recommend", json={**QUERY, "explain": True})
    assert response.status_code == 200, response.text
    answer = response.json()
    ids, explanations = _expected(reference[1], QUERY)
    assert answer["ids"] == ids
    assert len(answer["explanations"]) == len(ids)
    for got, want in zip(answer["explanations"], explanations, strict=True):
        assert got["history"] == want["history"]
        assert set(got["history"]) <= set(QUERY["history"])
        np.testing.assert_allclose(got["contributions"], want["contributions"], rtol=1e-4,
                                   atol=1e-6)
        assert got["shares"] == pytest.approx(want["shares"])
        assert sum(got["shares"].values()) == pytest.approx(1.0)


async def test_no_explanations_unless_asked_and_the_flag_is_checked(saved_indexes):
    api = serving.app(saved_indexes[1], poll_interval_s=0)
    async with running(api) as client:
        plain = await client.post("/v1/recommend", json=QUERY)
        off = await client.post("/v1/recommend", json={**QUERY, "explain": False})
        bad = await client.post("/v1/recommend", json={**QUERY, "explain": "yes"})
    assert plain.status_code == off.status_code == 200
    assert "explanations" not in plain.json() and "explanations" not in off.json()
    assert bad.status_code == 422
    assert bad.json()["field"] == "explain" and "`explain` must be true or false" in (
        bad.json()["error"])


async def test_a_batch_explains_only_the_queries_that_ask(saved_indexes, reference):
    import asyncio

    api = serving.app(saved_indexes[1], poll_interval_s=0, max_wait_ms=50)
    async with running(api) as client:
        asking, plain = await asyncio.gather(
            client.post("/v1/recommend", json={**QUERY, "explain": True}),
            client.post("/v1/recommend", json={"user_id": "u1", "history": ["i5"], "k": 2}))
    assert "explanations" not in plain.json()
    assert [e["history"] for e in asking.json()["explanations"]] == [
        e["history"] for e in _expected(reference[1], QUERY)[1]]


async def test_the_page_asks_for_and_shows_explanations(saved_indexes):
    api = serving.app(saved_indexes[1], poll_interval_s=0)
    async with running(api) as client:
        page = (await client.get("/")).text
    assert 'id="explain"' in page and "out.explain = true" in page
    assert "answer.explanations" in page and "because of" in page


@pytest.mark.slow
def test_chromium_shows_the_explanation_next_to_each_item(saved_indexes, reference, tmp_path):
    import shutil
    import subprocess

    from serving_helpers import live

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (apt-get install chromium)")
    with live(serving.app(saved_indexes[1], poll_interval_s=0)) as (host, port):
        link = f"http://{host}:{port}/?user_id=u3&history=i2,i4,i1&k=3&explain=1"
        shown = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
             "--dump-dom", link], capture_output=True, text=True, timeout=120)
    dom = shown.stdout
    assert "<th>why</th>" in dom, (dom[-2000:], shown.stderr[-2000:])
    cells = [part.split("</td>")[0] for part in dom.split('<td class="muted">')[1:]]
    _, explanations = _expected(reference[1], QUERY)
    assert len(cells) == len(explanations) == 3
    for cell, explanation in zip(cells, explanations, strict=True):
        assert cell.startswith("because of " + ", ".join(explanation["history"]))
        assert "towers 100%" in cell
