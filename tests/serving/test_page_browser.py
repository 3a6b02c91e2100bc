"""The page in a real browser: headless Chromium opens a link that carries a query and
compares two versions; the DOM it renders must hold both versions' top k."""

import shutil
import socket
import subprocess
import threading
import time

import httpx
import pytest
from serving_helpers import expected

from tfrs_kit import serving

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def live_server(versioned):
    """``tfrs-kit serve``'s app on 127.0.0.1 (uvicorn in a thread): versions 1 and 2."""
    import uvicorn

    root, publish = versioned
    publish(2)
    serving.write_latest(root, 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(serving.app(root, poll_interval_s=0), host="127.0.0.1",
                            port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_chromium_renders_two_versions_side_by_side(live_server, reference, tmp_path):
    link = f"{live_server}/?user_id=u3&history=i2,i4&k=3&version=1&compare=2"
    shown = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
         "--dump-dom", link],
        capture_output=True, text=True, timeout=120)
    dom = shown.stdout
    assert "Version 1</h2>" in dom and "Version 2</h2>" in dom, (dom[-2000:], shown.stderr[-2000:])
    query = {"user_id": "u3", "history": ["i2", "i4"]}
    for version, column in ((1, "result-a"), (2, "result-b")):
        ids, _ = expected(reference[version], query, 3)
        part = dom.split(f'id="{column}"')[1].split("</table>")[0]
        assert [cell.split("</td>")[0] for cell in part.split("<td>")[2::3]] == ids
