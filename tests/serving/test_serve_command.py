"""`tfrs-kit serve DIR`: its options, and uvicorn started with the app (no socket here)."""

import argparse
import json

import pytest

from tfrs_kit.serving import _cli


def _parse(argv):
    parser = argparse.ArgumentParser(prog="tfrs-kit")
    _cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_defaults_and_options(saved_indexes):
    args = _parse(["serve", str(saved_indexes[1])])
    assert (args.host, args.port, args.max_batch_size, args.max_wait_ms, args.workers) == (
        "127.0.0.1", 8000, 64, 2.0, 1)
    args = _parse(["serve", "DIR", "--port", "9000", "--max-batch-size", "8",
                   "--max-wait-ms", "0.5", "--workers", "2", "--host", "0.0.0.0"])
    assert (args.host, args.port, args.max_batch_size, args.max_wait_ms, args.workers) == (
        "0.0.0.0", 9000, 8, 0.5, 2)


def test_overload_and_fast_path_options_reach_the_app(saved_indexes, monkeypatch):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    _cli.run(_parse(["serve", str(saved_indexes[1])]))
    batcher = started["app"].state.server.batcher
    assert (batcher.max_queue, batcher.timeout_s) == (1024, 10.0)
    assert started["app"].hot_path is not None
    _cli.run(_parse(["serve", str(saved_indexes[1]), "--max-queue", "8",
                     "--request-timeout-s", "2.5", "--no-fast-path"]))
    batcher = started["app"].state.server.batcher
    assert (batcher.max_queue, batcher.timeout_s) == (8, 2.5)
    assert started["app"].hot_path is None


@pytest.mark.parametrize(("flag", "value"), [("--max-batch-size", "0"), ("--port", "70000"),
                                             ("--max-wait-ms", "-1"), ("--workers", "x"),
                                             ("--max-queue", "-1"),
                                             ("--request-timeout-s", "soon")])
def test_bad_options_exit_with_status_2_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["serve", "DIR", flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_run_starts_uvicorn_with_the_app(saved_indexes, monkeypatch):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert _cli.run(_parse(["serve", str(saved_indexes[1]), "--port", "8123",
                            "--max-batch-size", "16"])) == 0
    assert started["port"] == 8123 and started["host"] == "127.0.0.1"
    assert started["app"].state.server.batcher.max_batch_size == 16
    assert started["access_log"] is False  # a log line per request: only when asked
    _cli.run(_parse(["serve", str(saved_indexes[1]), "--access-log"]))
    assert started["access_log"] is True


def test_workers_get_the_settings_through_the_environment(saved_indexes, monkeypatch):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    monkeypatch.setenv(_cli.OPTIONS_VARIABLE, "{}")  # restored after the test
    _cli.run(_parse(["serve", str(saved_indexes[1]), "--workers", "3", "--max-wait-ms", "7"]))
    assert started["app"] == "tfrs_kit.serving._cli:app_from_environment"
    assert started["workers"] == 3 and started["factory"] is True
    options = json.loads(__import__("os").environ[_cli.OPTIONS_VARIABLE])
    assert options["max_wait_ms"] == 7.0
    api = _cli.app_from_environment()  # what each worker builds
    assert api.state.server.batcher.max_wait == pytest.approx(0.007)


def test_a_missing_directory_fails_before_uvicorn_starts(tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _cli.run(_parse(["serve", str(tmp_path / "nothing")]))


def test_tfrs_kit_serve_dispatches_to_the_server(saved_indexes, tmp_path, monkeypatch, capsys):
    import uvicorn

    from tfrs_kit import cli

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert cli.main(["serve", str(saved_indexes[1]), "--port", "8124"]) == 0
    assert started["port"] == 8124
    assert cli.main(["serve", str(tmp_path / "nothing")]) == 2
    assert "`directory` must be an index directory" in capsys.readouterr().err


def _free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_end_to_end_over_a_real_socket(saved_indexes, reference, tmp_path):
    """`tfrs-kit serve` in its own process, on 127.0.0.1, stopped whatever happens."""
    import os
    import subprocess
    import sys
    import time

    import httpx
    from serving_helpers import assert_same, expected

    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tfrs_kit.cli", "serve", str(saved_indexes[1]),
         "--port", str(port), "--poll-interval-s", "0"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # a bound on a loaded machine, not a measurement
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server never became ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        query = {"user_id": "u3", "history": ["i2"]}
        response = httpx.post(f"{base}/v1/recommend", json={**query, "k": 3}, timeout=30)
        assert response.status_code == 200, response.text
        assert_same(response.json(), expected(reference[1], query, 3))
        assert "tfrs_kit_requests_total" in httpx.get(f"{base}/metrics", timeout=30).text
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        log.close()


def _children(pid):
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _listening_inode(port):
    """The inode of the socket listening on 127.0.0.1:``port`` (Linux /proc/net/tcp)."""
    from pathlib import Path

    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    return None


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_workers_are_processes_serving_the_same_port(saved_indexes, reference, tmp_path):
    """`--workers 2`: two worker processes, each holding the one listening socket, and
    answers from them; the whole process group is stopped whatever happens."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx
    from serving_helpers import assert_same, expected

    port = _free_port()
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tfrs_kit.cli", "serve", str(saved_indexes[1]),
         "--port", str(port), "--poll-interval-s", "0", "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # a bound on a loaded machine, not a measurement
        ready_in_a_row = 0
        while ready_in_a_row < 10:  # new connections: each worker gets some of them
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers never became ready"
            try:
                ok = httpx.get(f"{base}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                ok = False
            ready_in_a_row = ready_in_a_row + 1 if ok else 0
            time.sleep(0.1 if ok else 0.5)
        workers = [pid for pid in _children(server.pid)
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2, log_path.read_text()[-3000:]
        inode = _listening_inode(port)
        assert inode is not None
        for pid in workers:  # each worker accepts on the same listening socket
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()
                     if fd.is_symlink()}
            assert f"socket:[{inode}]" in links
        query = {"user_id": "u3", "history": ["i2"]}
        for _ in range(6):
            response = httpx.post(f"{base}/v1/recommend", json={**query, "k": 3}, timeout=30)
            assert response.status_code == 200, response.text
            assert_same(response.json(), expected(reference[1], query, 3))
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
