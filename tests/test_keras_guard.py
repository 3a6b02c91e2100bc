"""Importing tfrs_kit selects Keras 2, or says exactly what to do when it is too late."""

import os
import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_sets_legacy_keras_when_tensorflow_is_not_imported_yet():
    result = _run(
        "import os, tfrs_kit, tensorflow as tf\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "tf_keras.api._v2.keras"]


def test_tensorflow_imported_first_but_keras_untouched_still_works():
    result = _run("import tensorflow as tf\nimport tfrs_kit\nprint(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_keras_3_already_loaded_raises_a_clear_import_error():
    result = _run("import tensorflow as tf\ntf.keras.layers\nimport tfrs_kit")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr
    assert "before TensorFlow is first imported" in result.stderr
