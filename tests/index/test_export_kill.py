"""An export killed midway (a real SIGKILL) leaves the earlier artifact intact."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tfrs_kit as tk

pytestmark = [pytest.mark.slow, pytest.mark.process]

EXPORT = textwrap.dedent("""
    import pathlib, sys, time
    import tfrs_kit as tk
    import tensorflow as tf

    target, marker = sys.argv[1], pathlib.Path(sys.argv[2])
    log = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"]}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    index = tk.IndexBuilder(k_max=3).build(model, {"item_id": ["x", "y", "z"]})
    real_save = tf.saved_model.save

    def slow_save(*args, **kwargs):
        real_save(*args, **kwargs)  # the SavedModel is written, the rest is not
        marker.touch()
        time.sleep(120)             # killed here

    tf.saved_model.save = slow_save
    index.save(target)
""")

# Killed inside the final swap: `point` names the call that never returns.
SWAP = textwrap.dedent("""
    import os, pathlib, shutil, sys, time
    import tfrs_kit as tk
    from tfrs_kit.index import _export

    target, marker, point = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    log = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"]}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    index = tk.IndexBuilder(k_max=3).build(model, {"item_id": ["x", "y", "z"]})
    calls = []
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def hang():
        marker.touch()
        time.sleep(120)  # killed here

    def replace(source, destination):
        calls.append(source)
        if point == "between the renames" and len(calls) == 2:
            hang()
        real_replace(source, destination)

    def rmtree(path, *args, **kwargs):
        if point == "before removing the backup" and ".old-" in str(path):
            hang()
        real_rmtree(path, *args, **kwargs)

    _export.os.replace, _export.shutil.rmtree = replace, rmtree
    index.save(target)
""")


def _earlier_index(target):
    log = {"user_id": ["a", "b"], "item_id": ["x", "y"]}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    index = tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]})
    index.save(target)
    return index


def _kill_at_marker(code, *args):
    marker = args[1]
    process = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the export never reached its kill point"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_during_export_keeps_the_previous_index(tmp_path):
    target, marker = tmp_path / "index", tmp_path / "midway"
    _earlier_index(target)
    before = sorted(p.name for p in target.iterdir())
    _kill_at_marker(EXPORT, target, marker)
    assert sorted(p.name for p in target.iterdir()) == before
    survivor = tk.load_index(target)  # the earlier export, whole
    assert len(survivor) == 2 and survivor.k_max == 2
    assert survivor.recommend({"user_id": ["a"]}, k=2).ids.shape == (1, 2)


@pytest.mark.parametrize("point, survivor_size", [("between the renames", 2),
                                                  ("before removing the backup", 3)])
def test_sigkill_inside_the_swap_leaves_a_loadable_index(tmp_path, point, survivor_size):
    target, marker = tmp_path / "index", tmp_path / "midway"
    earlier = _earlier_index(target)
    _kill_at_marker(SWAP, target, marker, point)
    assert any(p.name.startswith(".index.") for p in tmp_path.iterdir())  # debris left
    survivor = tk.load_index(target)  # the old export moved back, or the new one in place
    assert len(survivor) == survivor_size
    assert survivor.recommend({"user_id": ["a"]}, k=2).ids.shape == (1, 2)
    earlier.save(target)  # the next save cleans the debris of the killed one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "midway"]
    assert len(tk.load_index(target)) == 2
