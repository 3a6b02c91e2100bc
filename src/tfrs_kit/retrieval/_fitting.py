"""What :meth:`TwoTowerRetrieval.fit <tfrs_kit.TwoTowerRetrieval.fit>` checks first and watches.

Its settings, checked before any work; early stopping on the validation loss; and
a callback that stops training at the first non-finite loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice, check_fraction, check_int
from tfrs_kit.towers._model_base import check_fit_settings as check_common_settings

__all__ = ["StopOnNonFiniteLoss", "check_fit_settings", "check_not_compiled", "early_stopping"]

SCHEDULES = ("constant", "cosine")


def check_fit_settings(
    *,
    compiled: bool,
    epochs: Any,
    batch_size: Any,
    seed: Any,
    learning_rate: Any,
    learning_rate_schedule: Any,
    validation_data: Any,
    validation_fraction: Any,
    early_stopping_patience: Any,
    verbose: Any,
) -> int:
    """Checks ``fit``'s settings before it does any work; returns Keras's verbosity."""
    keras_verbose = check_common_settings(epochs=epochs, batch_size=batch_size, seed=seed,
                                          learning_rate=learning_rate, verbose=verbose)
    if compiled:
        check_not_compiled(learning_rate=learning_rate,
                           learning_rate_schedule=learning_rate_schedule)
    if learning_rate_schedule is not None:
        check_choice("learning_rate_schedule", learning_rate_schedule, SCHEDULES)
    check_fraction("validation_fraction", validation_fraction, allow_none=True)
    if validation_fraction is not None and validation_data is not None:
        raise invalid_argument("validation_fraction", "be None when validation_data is given",
                               validation_fraction)
    check_int("early_stopping_patience", early_stopping_patience, minimum=0, allow_none=True)
    if early_stopping_patience is not None and validation_data is None and (
            validation_fraction is None):
        raise invalid_argument(
            "early_stopping_patience", "come with validation_data or validation_fraction",
            early_stopping_patience,
        )
    return keras_verbose


def check_not_compiled(**settings: Any) -> None:
    """Refuses optimizer settings that ``fit`` would ignore: the model has its optimizer."""
    for argument, value in settings.items():
        if value is not None:
            raise invalid_argument(
                argument, "be None when the model is already compiled", value,
                hint="fit keeps the optimizer of `compile` (or of an earlier fit): pass the "
                "optimizer with its learning rate to `compile` instead, or do not compile "
                "and let fit compile with Adagrad.",
            )


def early_stopping(patience: int | None) -> list[tf.keras.callbacks.Callback]:
    """Stops when the validation loss has not improved for ``patience`` epochs; keeps the best."""
    if patience is None:
        return []
    return [tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                             restore_best_weights=True)]


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stops ``fit`` with an error at the first step whose loss is NaN or infinite.

    Keras would go on training on NaN weights and report ``loss: nan``; every
    later answer of the model would be silently wrong.
    """

    def __init__(self) -> None:
        super().__init__()
        self._supports_tf_logs = True  # reads the loss only: Keras need not convert all logs
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True
            raise FloatingPointError(
                f"fit stopped: the training loss became {float(loss)} at epoch "
                f"{self._epoch + 1}, step {batch + 1}; the weights now hold non-finite values. "
                "Rebuild the model and train with a lower learning_rate (or a larger "
                "temperature), and check the features for extreme values.")
