"""Importing tfrs_kit selects Keras 2, or says exactly what to do when it is too late."""

import os
import subprocess
import sys

import pytest


def _run(code: str, log_level: str | None = "3") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL")}
    if log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = log_level
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


_ENDS_A_DATASET = (
    "import tfrs_kit, tensorflow as tf\n"
    "print(sum(int(x) for x in tf.data.Dataset.range(3)))"
)


@pytest.fixture(scope="module")
def imported_first():
    """tfrs_kit imported before TensorFlow, no log level chosen: the Keras it selected, then
    a dataset read to its end (one process for two tests)."""
    return _run("import os, tfrs_kit, tensorflow as tf\n"
                "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__)\n"
                + _ENDS_A_DATASET.split("\n", 1)[1], log_level=None)


@pytest.mark.process
def test_sets_legacy_keras_when_tensorflow_is_not_imported_yet(imported_first):
    assert imported_first.returncode == 0, imported_first.stderr
    assert imported_first.stdout.splitlines()[0].split() == ["1", "tf_keras.api._v2.keras"]


@pytest.mark.process
def test_tensorflow_imported_first_but_keras_untouched_still_works():
    result = _run("import tensorflow as tf\nimport tfrs_kit\nprint(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


@pytest.mark.process
def test_keras_3_already_loaded_raises_a_clear_import_error():
    result = _run("import tensorflow as tf\ntf.keras.layers\nimport tfrs_kit")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr
    assert "before TensorFlow is first imported" in result.stderr


@pytest.mark.process
def test_tensorflow_starts_quietly_unless_the_user_chose_a_log_level(imported_first):
    quiet = imported_first
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip().splitlines()[1:] == ["3"]  # nothing else printed
    assert quiet.stderr == ""  # no CUDA probe, CPU notice or OUT_OF_RANGE line
    chosen = _run(_ENDS_A_DATASET, log_level="0")  # the user asked for everything
    assert "OUT_OF_RANGE" in chosen.stderr


def test_only_known_start_up_noise_is_hidden():
    from tfrs_kit._keras import startup_lines_to_show

    text = (
        "2026-12-04 I external/local_xla/xla/tsl/cuda/cudart_stub.cc:31] Could not find cuda "
        "drivers on your machine, GPU will not be used.\n"
        "2026-12-04 E cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error\n"
        "2026-12-04 E some_kernel.cc:12] a real failure\n"
    )
    assert startup_lines_to_show(text) == ["2026-12-04 E some_kernel.cc:12] a real failure"]
