"""TF Serving's warm-up file: a few real queries saved beside the SavedModel.

TensorFlow Serving replays ``saved_model/assets.extra/tf_serving_warmup_requests`` (a
TFRecord of ``tensorflow.serving.PredictionLog`` protos) before it marks a version
ready, so the first user request does not pay for loading lookup tables and kernels.

The protos are encoded here by hand (four small messages, the wire format is fixed),
so saving an index needs no ``tensorflow-serving-api``; its tests parse the file with
that package. Each request holds one query per :data:`WARMUP_QUERIES`, built from the
query tower's vocabularies (their most frequent tokens), for the ``serving_default``
signature.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_kit.features._vocabulary import Vocabularies

__all__ = ["WARMUP_FILE", "WARMUP_QUERIES", "warmup_inputs", "write_warmup"]

logger = logging.getLogger("tfrs_kit.index")

#: Where TF Serving looks for warm-up requests, relative to the SavedModel directory.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
#: The batch size of each warm-up request (one request per size).
WARMUP_QUERIES = (1, 4)


def write_warmup(saved_model: str | os.PathLike[str], specs: Mapping[str, tf.TensorSpec],
                 vocabularies: Vocabularies, *, backend: str) -> Path | None:
    """Writes the warm-up requests for ``serving_default`` into ``saved_model``.

    Args:
        saved_model: The SavedModel directory just written.
        specs: The ``serving_default`` signature's inputs (the query tower's specs).
        vocabularies: The query tower's vocabularies, the source of real query values.
        backend: The index's backend; ScaNN's SavedModel needs ScaNN's op, which stock
            TF Serving lacks (logged).

    Returns:
        The file written, or ``None`` when an input has a shape the writer cannot fill.
    """
    if backend == "scann":
        logger.info("The ScaNN index at %s needs ScaNN's TensorFlow op: stock TF Serving "
                    "cannot load it (build TF Serving with ScaNN's ops, or serve with "
                    "`tfrs-kit serve`); brute-force indexes need only core ops.", saved_model)
    records = []
    for size in WARMUP_QUERIES:
        inputs = warmup_inputs(specs, vocabularies, size)
        if inputs is None:
            logger.info("No TF Serving warm-up file for %s: an input is not a batched "
                        "dense tensor of ids, text or numbers.", saved_model)
            return None
        records.append(_prediction_log(inputs))
    path = Path(saved_model) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def warmup_inputs(specs: Mapping[str, tf.TensorSpec], vocabularies: Vocabularies,
                  size: int) -> dict[str, tf.Tensor] | None:
    """``size`` plausible queries as the signature's input tensors, or ``None``."""
    inputs = {}
    for name, spec in specs.items():
        shape = spec.shape.as_list() if isinstance(spec, tf.TensorSpec) else None
        if not shape:
            return None  # ragged, or not batched: no plain tensor to send
        shape = [size, *(2 if d is None else d for d in shape[1:])]  # a history: 2 items
        values = _values(name, spec.dtype, vocabularies, int(np.prod(shape)))
        try:
            inputs[name] = tf.reshape(tf.constant(values, dtype=spec.dtype), shape)
        except (TypeError, ValueError):  # a dtype with no plausible value (bool, ...)
            return None
    return inputs


def _values(name: str, dtype: tf.DType, vocabularies: Vocabularies, count: int) -> list[Any]:
    """``count`` values of feature ``name``: its vocabulary's first tokens, else its mean."""
    vocab = vocabularies.get(name)
    tokens = list(getattr(vocab, "tokens", None) or []) if vocab is not None else []
    if dtype == tf.string:
        tokens = [str(t) for t in tokens] or ["warm up"]
        return [tokens[i % len(tokens)] for i in range(count)]
    if dtype.is_integer and tokens:
        return [int(tokens[i % len(tokens)]) for i in range(count)]
    mean = getattr(vocab, "mean", None) if vocab is not None else None
    number = float(mean) if mean is not None and np.isfinite(mean) else 0.0
    return [round(number) if dtype.is_integer else number] * count


def _prediction_log(inputs: Mapping[str, tf.Tensor]) -> bytes:
    """A serialized ``PredictionLog{predict_log: PredictLog{request: PredictRequest}}``."""
    model_spec = _field(3, b"serving_default")  # ModelSpec.signature_name
    request = _field(1, model_spec)  # PredictRequest.model_spec
    for name, tensor in inputs.items():  # PredictRequest.inputs: map<string, TensorProto>
        proto = tf.make_tensor_proto(tensor.numpy()).SerializeToString()
        request += _field(2, _field(1, name.encode("utf-8")) + _field(2, proto))
    return _field(6, _field(1, request))  # PredictionLog.predict_log, PredictLog.request


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
