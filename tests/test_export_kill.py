"""An export killed midway (a real SIGKILL) leaves the earlier artifact intact."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tfrs_kit as tk

pytestmark = pytest.mark.slow

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


def test_sigkill_during_export_keeps_the_previous_index(tmp_path):
    target, marker = tmp_path / "index", tmp_path / "midway"
    log = {"user_id": ["a", "b"], "item_id": ["x", "y"]}
    vocabs = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabs, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabs, features=["item_id"], output_dim=4))
    tk.IndexBuilder(k_max=2).build(model, {"item_id": ["x", "y"]}).save(target)
    before = sorted(p.name for p in target.iterdir())

    process = subprocess.Popen([sys.executable, "-c", EXPORT, str(target), str(marker)],
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the export never reached its midpoint"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()

    assert process.returncode == -signal.SIGKILL
    assert sorted(p.name for p in target.iterdir()) == before
    survivor = tk.load_index(target)  # the earlier export, whole
    assert len(survivor) == 2 and survivor.k_max == 2
    assert survivor.recommend({"user_id": ["a"]}, k=2).ids.shape == (1, 2)
