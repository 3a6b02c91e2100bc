"""`tfrs-kit serve` under load: QPS, latency, micro-batching, a hot swap and recall, over HTTP.

For each catalogue size (``--sizes``, default 100,000 and 1,000,000 items) it builds an
index of 64-d embeddings per backend (``--backends``: brute force and ScaNN), saves it as
version 1 of a versioned folder (``DIR/latest``, ``DIR/versions/1/index``), starts
``tfrs-kit serve DIR`` as a subprocess on 127.0.0.1 (a free port; killed at the end, a
bounded wait for readiness), and drives it with a cheap asyncio client (one keep-alive
HTTP/1.1 connection per worker on raw streams, on uvloop when installed): N concurrent
workers (``--concurrency``, default 1, 8 and 32), each a loop of ``POST /v1/recommend``
with a random known user id and ``k=10`` for ``--duration`` seconds after a 1 s warm-up
that is not measured. Every setting runs twice: micro-batching on (``--max-batch-size``,
default 64, and ``--max-wait-ms``, default 2) and off (``--max-batch-size 1``), each
with its own server process, back to back.

The index: a query tower over 10,000 user ids (``tk.Tower``, seeded, untrained) and a
catalogue whose embeddings are given directly (the lowest-level way the index package
builds: ``IndexBuilder._assemble`` with a query tower, ids and embeddings, the step that
``IndexBuilder.build`` runs after embedding the candidates). The item embeddings are
"trained-looking": each item sits near one user's query embedding, plus noise, so every
user has a cluster of good items, as after training.

Recall@10 compares the served top 10 of a sample of users (``--recall-queries``) with the
exact top 10 from NumPy (the query tower's embeddings times every item's embedding).

One hot swap: at the largest size with the last backend, one extra run at the highest
concurrency (micro-batching on) copies version 1 to version 2 and moves ``latest`` a third
of the way in; the run lasts until answers come from version 2 (bounded), and every failed
request of that run is counted as a swap error.

Each row also reports ``cores``: the server process's CPU seconds (all its threads) per
second of the run, how much of the machine one server process used.

The client runs on the same machine as the server (here: 2 shared CPU cores), so it takes
CPU from the server: the QPS is a floor for the server alone, and latencies include the
client's own scheduling. The last line (largest size, ScaNN, highest concurrency)::

    SERVE qps=... p50_ms=... p99_ms=... batching_speedup=... swap_errors=... recall@10=...

    python benchmarks/serving_load.py --sizes 100000 --duration 5     # a quick run
    nice -n 5 python benchmarks/serving_load.py                       # the issue's settings
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import tfrs_kit as tk  # selects Keras 2 before tf.keras is first used
from tfrs_kit import serving

HOST = "127.0.0.1"
DIM = 64
K = 10
USERS = 10_000
READY_TIMEOUT_S = 900.0
WARMUP_S = 1.0
SERVER_PIDS: dict[str, int] = {}  # url -> the server's process id


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of process ``pid`` so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(url: str, run: Any) -> dict[str, Any]:
    """``run()``'s result, with ``cores``: the server's CPU seconds per second meanwhile
    (all threads; at most the number of cores)."""
    pid = SERVER_PIDS[url]
    cpu, started = cpu_seconds(pid), time.perf_counter()
    result: dict[str, Any] = run()
    result["cores"] = (cpu_seconds(pid) - cpu) / (time.perf_counter() - started)
    return result


def query_tower(seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """A seeded user-id tower, its user ids and their query embeddings."""
    users = np.array([f"u{i}" for i in range(USERS)], dtype=object)
    vocabs = tk.VocabularyBuilder().fit({"user_id": users}, features={"user_id": "categorical"})
    tf.keras.utils.set_random_seed(seed)
    tower = tk.Tower(vocabs, features=["user_id"], output_dim=DIM)
    return tower, users, tower.embed({"user_id": users}).astype(np.float32)


def item_embeddings(user_embeddings: np.ndarray, items: int, seed: int) -> np.ndarray:
    """Each item near a random user's embedding: clusters as after training."""
    rng = np.random.default_rng(seed)
    scale = float(user_embeddings.std())
    out = np.empty((items, DIM), dtype=np.float32)
    for start in range(0, items, 100_000):
        stop = min(start + 100_000, items)
        owners = rng.integers(0, len(user_embeddings), stop - start)
        out[start:stop] = user_embeddings[owners] + 0.5 * scale * rng.normal(
            size=(stop - start, DIM))
    return out


def build_index(tower: Any, embeddings: np.ndarray, backend: str) -> tk.Index:
    """The index of ``embeddings`` (ids 0..n-1) with ``tower`` as its query tower."""
    builder = tk.IndexBuilder(backend=backend, k_max=K)
    ids = np.arange(len(embeddings), dtype=np.int64)
    return builder._assemble(tower, ids, embeddings, tf.int64)


def exact_top(queries: np.ndarray, embeddings: np.ndarray, k: int) -> np.ndarray:
    """The exact top ``k`` positions per query, 16 queries at a time (bounded memory)."""
    parts = []
    for start in range(0, len(queries), 16):
        scores = queries[start:start + 16] @ embeddings.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        parts.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(parts)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(root: Path, max_batch_size: int, max_wait_ms: float = 2.0) -> Iterator[str]:
    """``tfrs-kit serve root`` on a free port, ready; always killed on the way out."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("tfrs-kit")), "serve", str(root),
               "--host", HOST, "--port", str(port), "--max-batch-size", str(max_batch_size),
               "--max-wait-ms", str(max_wait_ms), "--poll-interval-s", "0.5"]
    log = open(root / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        url = f"http://{HOST}:{port}"
        wait_ready(url, process, root / f"server-{port}.log")
        SERVER_PIDS[url] = process.pid
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n"
                               + log.read_text(errors="replace")[-3000:])
        with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{url}/readyz", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the server at {url} was not ready within {READY_TIMEOUT_S:.0f}s")


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams: the cheapest client.

    It parses only the status line and ``content-length``: about 40 us of client CPU
    per request here, against about 1.3 ms for httpx's AsyncClient (measured on this
    2-core machine), CPU taken from the server running beside it.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """``(status, body)`` of one POST; reconnects once the server has closed it."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json"
                          b"\r\ncontent-length: %d\r\n\r\n%s" % (
                              path.encode(), self.host.encode(), len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


async def drive(url: str, users: np.ndarray, concurrency: int, duration: float,
                swap: Any = None) -> dict[str, Any]:
    """``concurrency`` workers posting random user queries for ``duration`` seconds.

    Each worker holds one keep-alive connection (a raw-stream client: see
    :class:`Connection`). The first ``WARMUP_S`` seconds are not measured (connections
    open, batches settle); QPS counts the answers completed in the measured window. With
    ``swap`` (called once, a third of the way in), the run lasts until an answer comes
    from version 2 (at most ``duration + 300`` seconds), and every request counts.
    """
    latencies: list[float] = []
    errors = 0
    versions: set[int] = set()
    bodies = [json.dumps({"user_id": str(user), "k": K}).encode() for user in users]
    measure_from = time.perf_counter() + (0 if swap is not None else WARMUP_S)
    stop_at = measure_from + duration

    def done() -> bool:
        now = time.perf_counter()
        if swap is not None and 2 not in versions:
            return now > stop_at + 300
        return now > stop_at

    async def worker(seed: int) -> None:
        nonlocal errors
        rng = np.random.default_rng(seed)
        connection = Connection(url)
        while not done():
            sent = time.perf_counter()
            try:
                status, payload = await connection.post("/v1/recommend",
                                                        bodies[rng.integers(len(bodies))])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, payload = 0, b""
                connection.close()
            if sent < measure_from:
                continue
            if status == 200:
                latencies.append(time.perf_counter() - sent)
                versions.add(json.loads(payload)["version"])
            else:
                errors += 1
        connection.close()

    tasks = [asyncio.create_task(worker(seed)) for seed in range(concurrency)]
    if swap is not None:
        await asyncio.sleep(duration / 3)
        await asyncio.to_thread(swap)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measure_from
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"qps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": errors, "requests": len(latencies),
            "versions": sorted(versions), "seconds": elapsed}


def served_recall(url: str, users: np.ndarray, user_embeddings: np.ndarray,
                  embeddings: np.ndarray, count: int, seed: int) -> float:
    """Recall@10 of the served answers against NumPy's exact top 10."""
    rows = np.random.default_rng(seed).choice(len(users), size=count, replace=False)
    want = exact_top(user_embeddings[rows], embeddings, K)

    async def answers() -> list[list[int]]:
        connection = Connection(url)
        found = []
        for row in rows:
            body = json.dumps({"user_id": str(users[row]), "k": K}).encode()
            status, payload = await connection.post("/v1/recommend", body)
            found.append(json.loads(payload)["ids"] if status == 200 else [])
        connection.close()
        return found

    served = run_async(answers())
    shares = [len(set(ids) & set(exact.tolist())) / K
              for ids, exact in zip(served, want, strict=True)]
    return float(np.mean(shares))


def run_async(coroutine: Any) -> Any:
    """``asyncio.run``, on uvloop when it is installed (a cheaper client loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def publish_copy(root: Path, version: int) -> None:
    """Version ``version`` as a copy of version 1, then ``latest`` moved to it."""
    shutil.copytree(serving.version_path(root, 1), serving.version_path(root, version))
    serving.write_latest(root, version)


def row(size: int, backend: str, batching: str, concurrency: int,
        result: dict[str, Any]) -> str:
    return (f"{size:>9} {backend:<11} {batching:<5} {concurrency:>4} {result['qps']:>8.1f} "
            f"{result['p50']:>8.1f} {result['p99']:>8.1f} {result['errors']:>6} "
            f"{result['requests']:>8} {result.get('cores', float('nan')):>5.2f}")


def run_backend(args: argparse.Namespace, size: int, backend: str, data: dict[str, Any],
                folder: Path, swap_here: bool) -> dict[str, Any]:
    """Every concurrency, batching on and off, for one index; recall; maybe the swap."""
    started = time.perf_counter()
    index = build_index(data["tower"], data["embeddings"], backend)
    root = folder / f"{backend}-{size}"
    root.mkdir()
    index.save(serving.version_path(root, 1))
    serving.write_latest(root, 1)
    del index
    print(f"# {size} items, {backend}: built and saved in "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    results: dict[str, Any] = {}
    for batching, max_batch in (("on", args.max_batch_size), ("off", 1)):
        with server(root, max_batch, args.max_wait_ms) as url:
            for concurrency in args.concurrency:
                result = measured(url, lambda c=concurrency: run_async(
                    drive(url, data["users"], c, args.duration)))
                results[(batching, concurrency)] = result
                print(row(size, backend, batching, concurrency, result), flush=True)
            if batching == "on":
                results["recall"] = served_recall(
                    url, data["users"], data["user_embeddings"], data["embeddings"],
                    args.recall_queries, args.seed)
                print(f"# recall@10={results['recall']:.4f} "
                      f"({args.recall_queries} users vs NumPy exact)", flush=True)
                if swap_here:
                    results["swap"] = swap_run(args, url, data["users"], root)
                    print(row(size, backend, "swap", max(args.concurrency),
                              results["swap"]), flush=True)
    return results


def swap_run(args: argparse.Namespace, url: str, users: np.ndarray,
             root: Path) -> dict[str, Any]:
    swapped = threading.Event()

    def swap() -> None:
        publish_copy(root, 2)
        swapped.set()

    result = run_async(drive(url, users, max(args.concurrency), args.duration, swap=swap))
    print(f"# hot swap: versions answered {result['versions']}, {result['errors']} failed "
          f"requests of {result['requests'] + result['errors']}", flush=True)
    return result


def summary(size: int, backend: str, results: dict[str, Any], top: int) -> str:
    on, off = results[("on", top)], results[("off", top)]
    swap = results.get("swap")
    line = (f"qps={on['qps']:.1f} p50_ms={on['p50']:.1f} p99_ms={on['p99']:.1f} "
            f"batching_speedup={on['qps'] / off['qps']:.2f}")
    line += f" swap_errors={swap['errors']}" if swap else " swap_errors=n/a"
    return line + f" recall@10={results['recall']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["brute_force", "scann"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--recall-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=64,
                        help="the server's batch size with micro-batching on")
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args()
    tower, users, user_embeddings = query_tower(args.seed)
    top = max(args.concurrency)
    print(f"{'items':>9} {'backend':<11} {'batch':<5} {'conc':>4} {'qps':>8} {'p50_ms':>8} "
          f"{'p99_ms':>8} {'errors':>6} {'requests':>8} {'cores':>5}", flush=True)
    lines = []
    with tempfile.TemporaryDirectory(prefix="serving_load-") as folder:
        for size in args.sizes:
            data = {"tower": tower, "users": users, "user_embeddings": user_embeddings,
                    "embeddings": item_embeddings(user_embeddings, size, args.seed + 1)}
            for backend in args.backends:
                swap_here = size == args.sizes[-1] and backend == args.backends[-1]
                results = run_backend(args, size, backend, data, Path(folder), swap_here)
                lines.append(f"{backend} {size}: {summary(size, backend, results, top)}")
    for line in lines[:-1]:
        print(line)
    print("SERVE " + lines[-1].split(": ", 1)[1])


if __name__ == "__main__":
    main()
