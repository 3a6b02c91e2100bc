"""Training under tf.distribute: cross-replica negatives, several workers, kill and resume.

Logical devices and TF_CONFIG must be set before TensorFlow initialises, so the
distributed runs happen in subprocesses (tests/retrieval/distributed_helpers/train.py),
each with a timeout and killed in ``finally``. In-process tests cover the
one-replica case, which must equal plain ``tfrs.tasks.Retrieval`` exactly.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

import tfrs_kit as tk
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.retrieval._cross_replica import CrossReplicaRetrieval, cross_replica_concat
from tfrs_kit.retrieval._pipeline import EpochShuffle, training_dataset
from tfrs_kit.retrieval._task import FastRetrieval

HELPER = pathlib.Path(__file__).parent / "distributed_helpers" / "train.py"
TIMEOUT_S = 300  # a hang fails, however loaded the machine: no test asserts on speed


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _train(out: pathlib.Path, *args: str) -> dict:
    """Runs the helper to completion and returns its results."""
    process = subprocess.Popen([sys.executable, str(HELPER), "--out", str(out), *args],
                               env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output = process.communicate(timeout=TIMEOUT_S)[0]
    finally:
        _kill(process)
    if process.returncode != 0:
        pytest.fail(f"training failed ({process.returncode}):\n{output[-4000:]}")
    with np.load(out) as result:
        return dict(result)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# --- one replica: exactly tfrs.tasks.Retrieval -------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"temperature": 0.3, "remove_accidental_hits": True, "num_hard_negatives": 3}])
def test_one_replica_equals_tfrs_retrieval(options):
    rng = np.random.default_rng(0)
    query = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    candidate = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    ids = tf.constant(["a", "b", "a", "c", "d", "b"])
    probability = tf.constant(rng.uniform(0.1, 0.9, 6), tf.float32)
    kwargs = {"candidate_sampling_probability": probability}
    if options.get("remove_accidental_hits"):
        kwargs["candidate_ids"] = ids
    ours = CrossReplicaRetrieval(**options)(query, candidate, **kwargs)
    theirs = tfrs.tasks.Retrieval(**options)(query, candidate, **kwargs)
    assert float(ours) == float(theirs)


def test_one_replica_concat_is_the_identity():
    values = tf.constant([[1.0], [2.0]])
    (same,) = cross_replica_concat(values)
    assert same is values


def test_the_model_option_picks_the_task():
    vocabs = tk.VocabularyBuilder().fit({"u": ["a"], "i": ["x"]})
    towers = (tk.Tower(vocabs, features=["u"], output_dim=2),
              tk.Tower(vocabs, features=["i"], output_dim=2))
    assert isinstance(tk.TwoTowerRetrieval(*towers).task, CrossReplicaRetrieval)
    plain = tk.TwoTowerRetrieval(*towers, cross_replica_negatives=False)
    assert type(plain.task) is FastRetrieval  # the per-replica task, without gathering
    assert plain.cross_replica_negatives is False


# --- the epoch-keyed shuffle ----------------------------------------------------------------


def _orders(dataset) -> list[int]:
    return np.concatenate([batch["row"].numpy() for batch in dataset]).tolist()


def test_epoch_keyed_shuffle_depends_on_the_epoch_only():
    table = {"row": np.arange(50)}
    first, second = EpochShuffle(5), EpochShuffle(5)
    a = make_dataset(table, ["row"], batch_size=10, shuffle=True, seed=3, epoch=first)
    b = make_dataset(table, ["row"], batch_size=10, shuffle=True, seed=3, epoch=second)
    epoch0 = _orders(a)
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    assert _orders(a) == epoch0  # same epoch, same order
    first.epoch.assign(1)
    epoch1 = _orders(a)
    assert epoch1 != epoch0
    second.epoch.assign(1)
    assert _orders(b) == epoch1  # another process at the same epoch agrees


def test_training_dataset_needs_a_seed_with_several_workers():
    class _Resolver:
        def cluster_spec(self):
            return tf.train.ClusterSpec({"worker": ["h:1", "h:2"]})

    class _Strategy:
        cluster_resolver = _Resolver()

    with pytest.raises(ValueError, match=r"`seed` must be set when shuffling under a multi-wo"):
        training_dataset({"row": np.arange(4)}, ["row"], batch_size=2, shuffle=True, seed=None,
                         strategy=_Strategy())
    _, callbacks = training_dataset({"row": np.arange(4)}, ["row"], batch_size=2, shuffle=True,
                                    seed=1, strategy=_Strategy())
    assert [type(c) for c in callbacks] == [EpochShuffle]


# --- two replicas on one host (two logical CPUs) ---------------------------------------------

_LOGITS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tfrs_kit
    import tensorflow as tf
    from tfrs_kit.retrieval._cross_replica import CrossReplicaRetrieval

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def losses(data):
        query, candidate = (np.asarray(data[k], np.float32) for k in ("query", "candidate"))
        ids, probability = np.asarray(data["ids"]), np.asarray(data["probability"], np.float32)
        bounds = tf.constant(np.cumsum([0, *data["sizes"]]))

        def piece(array, context):
            r = context.replica_id_in_sync_group
            return tf.constant(array)[bounds[r]:bounds[r + 1]]

        with strategy.scope():
            task = CrossReplicaRetrieval(temperature=0.5, remove_accidental_hits=True,
                                         batch_metrics=[tf.keras.metrics.CategoricalAccuracy()])

        def step():
            ctx = tf.distribute.get_replica_context()
            return task(piece(query, ctx), piece(candidate, ctx), candidate_ids=piece(ids, ctx),
                        candidate_sampling_probability=piece(probability, ctx))

        result = strategy.run(tf.function(step))
        return [float(v) for v in strategy.experimental_local_results(result)]

    print(json.dumps([losses(data) for data in json.loads(sys.argv[1])]))
""")
_SIZES = {"even": [4, 4], "uneven": [4, 3]}


def _logits_data(sizes):
    rng = np.random.default_rng(1)
    n = sum(sizes)
    return {
        "sizes": sizes,
        "query": rng.normal(size=(n, 3)).tolist(),
        "candidate": rng.normal(size=(n, 3)).tolist(),
        "ids": [int(i) for i in rng.integers(0, 4, n)],  # accidental hits across replicas
        "probability": rng.uniform(0.05, 0.5, n).tolist(),
    }


@pytest.fixture(scope="module")
def replica_losses():
    """Each replica's loss, for every case of ``_SIZES``, from one process."""
    cases = [_logits_data(sizes) for sizes in _SIZES.values()]
    result = subprocess.run([sys.executable, "-c", _LOGITS_SCRIPT, json.dumps(cases)],
                            env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(zip(_SIZES, json.loads(result.stdout.strip().splitlines()[-1]), strict=True))


def _reference_loss(query, candidate, ids, probability, temperature, rows):
    """NumPy: each query in ``rows`` against every candidate of the global batch."""
    logits = query[rows] @ candidate.T / temperature - np.log(probability)[None, :]
    positives = np.asarray(rows)
    hits = (ids[None, :] == ids[positives][:, None])
    hits[np.arange(len(rows)), positives] = False
    logits = np.where(hits, logits + np.finfo(np.float32).min / 100.0, logits)
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(rows)), positives].sum())


@pytest.mark.process
@pytest.mark.parametrize("case", list(_SIZES))
def test_each_replica_sees_the_global_batch_as_negatives(case, replica_losses):
    sizes = _SIZES[case]
    n = sum(sizes)
    data = _logits_data(sizes)
    losses = replica_losses[case]
    arrays = [np.asarray(data[k]) for k in ("query", "candidate", "ids", "probability")]
    expected = [_reference_loss(*arrays, 0.5, list(range(0, sizes[0]))),
                _reference_loss(*arrays, 0.5, list(range(sizes[0], n)))]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)


_SEEDED = ("--shuffle-seed", "5", "--epochs", "2")


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """The reference both multi-device runs must equal: one device, one worker."""
    return _train(tmp_path_factory.mktemp("one") / "one.npz", *_SEEDED)


@pytest.mark.slow
@pytest.mark.process
def test_two_replicas_train_like_one_device_on_the_global_batch(tmp_path, one):
    # 2001 rows in batches of 128: the last batch (81 rows) splits 41 / 40.
    two = _train(tmp_path / "two.npz", "--devices", "2", "--strategy", "mirrored", *_SEEDED)
    assert int(two["replicas"]) == 2
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for tower in ("query", "candidate"):
        np.testing.assert_allclose(two[tower], one[tower], atol=1e-5)


# --- two workers on loopback --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.process
def test_two_workers_train_like_one_worker(tmp_path, one):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    try:
        for index in range(2):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            processes.append(subprocess.Popen(
                [sys.executable, str(HELPER), "--out", str(tmp_path / f"w{index}.npz"),
                 "--strategy", "multi_worker", *_SEEDED],
                env=_env(TF_CONFIG=config), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + TIMEOUT_S
        for process in processes:
            output, _ = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, output[-4000:]
    finally:
        for process in processes:
            _kill(process)
    for index in range(2):
        with np.load(tmp_path / f"w{index}.npz") as worker:
            assert int(worker["replicas"]) == 2
            np.testing.assert_allclose(worker["loss"], one["loss"], rtol=1e-5)
            np.testing.assert_allclose(worker["query"], one["query"], atol=1e-5)
            np.testing.assert_allclose(worker["candidate"], one["candidate"], atol=1e-5)


# --- fault tolerance: SIGKILL after a checkpoint, restart, same model -----------------------


@pytest.mark.slow
@pytest.mark.process
def test_killed_training_resumes_to_the_same_model(tmp_path):
    args = ("--shuffle-seed", "11", "--epochs", "4")
    uninterrupted = _train(tmp_path / "full.npz", *args)

    backup, markers = tmp_path / "backup", tmp_path / "markers"
    out = tmp_path / "resumed.npz"
    command = [sys.executable, str(HELPER), "--out", str(out), *args,
               "--backup-dir", str(backup), "--marker-dir", str(markers)]
    victim = subprocess.Popen([*command, "--hang-after-epoch", "2"], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (markers / "epoch_2").exists():
            assert victim.poll() is None, "training exited before epoch 2"
            assert time.monotonic() < deadline, "no checkpoint after epoch 2 in time"
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        _kill(victim)
    assert not out.exists() and not (markers / "epoch_3").exists()

    resumed = _train(out, *args, "--backup-dir", str(backup), "--marker-dir", str(markers))
    assert len(resumed["loss"]) == 2  # only epochs 3 and 4 ran again
    np.testing.assert_allclose(resumed["loss"], uninterrupted["loss"][2:], rtol=1e-5)
    np.testing.assert_allclose(resumed["query"], uninterrupted["query"], atol=1e-5)
    np.testing.assert_allclose(resumed["candidate"], uninterrupted["candidate"], atol=1e-5)
