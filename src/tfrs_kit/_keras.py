"""Makes sure TensorFlow uses Keras 2 (``tf-keras``), which TFRS needs.

TensorFlow >= 2.16 picks Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before
``tf.keras`` is first touched. We set it when we still can and refuse to run on
Keras 3 with an error that says what to do.
"""

from __future__ import annotations

import os
import sys

_HOW_TO_FIX = (
    "tfrs_kit needs Keras 2 (the `tf-keras` package), but TensorFlow has already loaded "
    "Keras {version}. Set the environment variable TF_USE_LEGACY_KERAS=1 before TensorFlow "
    "is first imported (for example `export TF_USE_LEGACY_KERAS=1` in the shell, or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the very top of your script), or import "
    "tfrs_kit before anything that imports TensorFlow, and make sure `tf-keras` is installed "
    "(`pip install tf-keras~=2.20.0`)."
)


def ensure_legacy_keras() -> None:
    """Selects Keras 2 for TensorFlow, or raises ImportError if it is too late."""
    if os.environ.get("TF_USE_LEGACY_KERAS", "").lower() not in ("1", "true"):
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    if "tensorflow" not in sys.modules:
        return
    # TensorFlow was imported first. Its `tf.keras` is loaded lazily and reads the
    # variable on first use, so it may still be Keras 2; check which one it is.
    import tensorflow as tf

    try:
        module = tf.keras.__name__
    except Exception as error:  # tf-keras missing: TF raises on first access
        raise ImportError(_HOW_TO_FIX.format(version="(unavailable)") + f" ({error})") from error
    if not module.startswith("tf_keras"):
        raise ImportError(_HOW_TO_FIX.format(version=f"3 ({module})"))
