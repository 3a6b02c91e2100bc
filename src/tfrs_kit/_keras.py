"""Makes sure TensorFlow uses Keras 2 (``tf-keras``), which TFRS needs, and starts it quietly.

TensorFlow >= 2.16 picks Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before
``tf.keras`` is first touched. We set it when we still can and refuse to run on
Keras 3 with an error that says what to do.

TensorFlow's C++ side also prints start-up lines on every machine (CUDA probes on a
machine without a GPU driver, CPU-instruction notices) and an ``OUT_OF_RANGE: End of
sequence`` line whenever a dataset ends. None of them is actionable, so unless the
user set ``TF_CPP_MIN_LOG_LEVEL`` themselves, the kit hides them: INFO and WARNING
lines through that variable, and the start-up probe's lines by filtering what
TensorFlow writes while it loads (any other line is passed on).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

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


# Lines TensorFlow's C++ start-up prints that say nothing a user can act on.
_STARTUP_NOISE = (
    "failed call to cuInit", "Could not find cuda drivers", "cudart_stub",
    "Unable to register cuDNN", "Unable to register cuFFT", "Unable to register cuBLAS",
    "TF-TRT Warning", "computation placer already registered", "oneDNN custom operations",
    "cpu_feature_guard", "To enable the following instructions",
)


def startup_lines_to_show(text: str) -> list[str]:
    """The lines of TensorFlow's start-up output that are not known noise."""
    return [line for line in text.splitlines()
            if line.strip() and not any(noise in line for noise in _STARTUP_NOISE)]


def quiet_tensorflow_startup() -> None:
    """Loads TensorFlow without its non-actionable C++ lines, unless the user chose a level.

    Does nothing when TensorFlow is already loaded or ``TF_CPP_MIN_LOG_LEVEL`` is set.
    """
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    # Hides INFO and WARNING lines, such as OUT_OF_RANGE at every dataset's end.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to redirect: load as is
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = startup_lines_to_show(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


@contextlib.contextmanager
def without_layer_traces() -> Iterator[None]:
    """``tf.saved_model.save`` inside this block skips tracing every Keras layer's ``call``.

    An exported index is served through its own ``tf.function`` s; the per-layer call
    traces that Keras adds to a SavedModel (what ``model.save(save_traces=False)``
    leaves out) are never called, and they were about half of each export's time.
    The layers' variables and attributes are saved as before. With a ``tf-keras``
    whose private option moved, the export keeps the traces (slower, the same model).
    """
    try:
        from tf_keras.src.saving.legacy.saved_model import utils
    except ImportError:
        yield
        return
    with utils.keras_option_scope(save_traces=False, in_tf_saved_model_scope=False):
        yield
