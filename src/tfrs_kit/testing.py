"""Conformance checks for towers and data sources: the ones the built-ins pass.

A plugin author's test is one call::

    from tfrs_kit.testing import check_dataset, check_tower

    def test_my_tower():
        check_tower(MyTower, output_dim=8)

    def test_my_data():
        check_dataset(my_loader, num_users=10)

Each check that fails raises :class:`ConformanceError` (an ``AssertionError``)
naming the check and what to fix.
"""

from __future__ import annotations

import copy
import inspect
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import id_kind
from tfrs_kit.data._table import to_table
from tfrs_kit.data._tensors import make_dataset
from tfrs_kit.datasets import InteractionDataset, load_dataset
from tfrs_kit.features._vocabulary import Vocabularies, VocabularyBuilder
from tfrs_kit.index._inputs import query_tensor
from tfrs_kit.towers import Tower

__all__ = ["ConformanceError", "check_dataset", "check_tower", "default_vocabularies"]

_BATCH = 3
_OOV_STRING = "__tfrs_kit_never_seen__"
_OOV_INT = 987_654_321_987


class ConformanceError(AssertionError):
    """A tower or data source breaks the contract every tfrs_kit plugin must keep."""


# --- towers ---------------------------------------------------------------------------


def default_vocabularies() -> Vocabularies:
    """Tiny vocabularies of every feature kind, which :func:`check_tower` uses by default.

    ``user_id`` (categorical strings), ``item_id`` (categorical int64),
    ``genres`` (multi-valued strings), ``title`` (text with bigrams), ``age``
    (numeric) and ``timestamp`` (seconds since the epoch).

    Example:
        >>> from tfrs_kit.testing import default_vocabularies
        >>> sorted(default_vocabularies())
        ['age', 'genres', 'item_id', 'timestamp', 'title', 'user_id']
    """
    log = {
        "user_id": ["u1", "u2", "u3", "u1"],
        "item_id": np.array([10, 11, 12, 10], dtype=np.int64),
        "genres": [["comedy"], ["comedy", "drama"], [], ["horror"]],
        "title": ["Toy Story", "Heat", "Up", "Toy Story"],
        "age": [21.0, 35.0, 50.0, np.nan],
        "timestamp": np.array([1_600_000_000, 1_600_086_400, 1_600_100_000, 1_700_000_000],
                              dtype=np.int64),
    }
    kinds = {"user_id": "categorical", "item_id": "categorical", "genres": "multi",
             "title": "text", "age": "numeric", "timestamp": "timestamp"}
    return VocabularyBuilder(ngrams=2).fit(log, features=kinds)


def check_tower(
    tower_cls: type[Tower],
    vocabularies: Vocabularies | Mapping[str, Any] | None = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Checks that a tower class keeps the contract of the built-in towers.

    The tower is fed the way ``fit`` and the index feed it: a batch of a
    table's rows through the training input pipeline (lists of ids as ragged
    tensors, lists of floats of one length as dense ``[batch, length]``
    vectors), which is also how :class:`~tfrs_kit.IndexBuilder` embeds the
    candidates, and the same rows padded to ``input_signature()``, which is how
    the exported index serves queries. A tower that passes therefore trains
    and serves.

    Builds ``tower_cls(vocabularies, **kwargs)`` and checks, in order:
    ``input_signature()`` (a spec per feature, any batch size); output shape
    ``[batch, output_dim]`` and dtype float32; the same rows give the same
    output fed as ``fit`` feeds them, padded as serving feeds them, and through
    :meth:`~tfrs_kit.Tower.embed`; determinism (the same input twice
    gives the same output); out-of-vocabulary input (unseen ids, empty lists,
    NaN; finite numbers for a feature without a vocabulary, such as a
    precomputed vector) gives finite output; gradients reach its weights; ``get_config`` is
    JSON-serialisable and ``from_config`` rebuilds a tower that, given the same
    weights, outputs the same; Keras reloads it by its registered name
    (``tf.keras.utils.serialize_keras_object``, then
    ``tf.keras.models.model_from_json``); and a SavedModel serving it through
    ``input_signature()`` reloads with the same outputs.

    Args:
        tower_cls: The :class:`~tfrs_kit.Tower` subclass to check.
        vocabularies: The vocabularies to build it with; default:
            :func:`default_vocabularies` (one feature of each kind).
        inputs: A batch of raw features to use; default: made up from
            ``input_signature()`` and the vocabularies.
        **kwargs: Passed to the constructor. ``features`` defaults to every
            vocabulary's name; a tower with ``requires_vocabularies = False``
            is given the features it reads without vocabularies here, and its
            ``input_signature()`` gives their specs.

    Raises:
        ConformanceError: A check failed; the message names it.
        TypeError: ``tower_cls`` is not a ``Tower`` subclass.

    Example:
        >>> import tfrs_kit as tk
        >>> from tfrs_kit.testing import check_tower
        >>> vocabs = tk.VocabularyBuilder().fit({"user_id": ["a", "b"]})
        >>> check_tower(tk.Tower, vocabs, output_dim=4)
    """
    if not (isinstance(tower_cls, type) and issubclass(tower_cls, Tower)):
        raise invalid_argument(
            "tower_cls", "be a subclass of tfrs_kit.Tower", tower_cls, error=TypeError,
            hint="Pass the class, not an instance." if isinstance(tower_cls, Tower) else None,
        )
    if vocabularies is None:
        vocabularies = default_vocabularies()
    elif not isinstance(vocabularies, Vocabularies):
        vocabularies = Vocabularies.from_dict(vocabularies)
    if "features" not in kwargs and _accepts(tower_cls, "features"):
        kwargs["features"] = list(vocabularies)
    subject = tower_cls.__name__
    try:
        tower = tower_cls(vocabularies, **kwargs)
    except Exception as error:
        raise ConformanceError(
            f"{subject} fails the 'construct' check: {subject}(vocabularies, **{kwargs!r}) "
            f"raised {type(error).__name__}: {error}"
        ) from error

    specs = _check_input_signature(subject, tower)
    batch = (_as_batch(subject, inputs, specs) if inputs is not None
             else _sample_batch(specs, tower.vocabularies, size=_BATCH, oov=False))
    oov_batch = _sample_batch(specs, tower.vocabularies, size=2, oov=True)
    rows, oov_rows = (_as_rows(b, tower.vocabularies) for b in (batch, oov_batch))
    fit_batch = _fit_batch(subject, rows, specs)
    expected = _check_output(subject, tower, fit_batch)
    _check_determinism(subject, tower, fit_batch, expected)
    _check_input_paths(subject, tower, batch, rows, expected)
    _check_out_of_vocabulary(subject, tower, oov_batch)
    _check_out_of_vocabulary(subject, tower, _fit_batch(subject, oov_rows, specs))
    _check_trainable(subject, tower, fit_batch)
    _check_config(subject, tower, batch, expected)
    _check_keras_name(subject, tower)
    _check_saved_model(subject, tower, specs, batch, expected)


def _fail(subject: str, check: str, problem: str) -> ConformanceError:
    return ConformanceError(f"{subject} fails the {check!r} check: {problem}")


def _accepts(cls: type, parameter: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    return parameter in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _check_input_signature(subject: str, tower: Tower) -> dict[str, tf.TensorSpec]:
    check = "input_signature"
    try:
        specs = tower.input_signature()
    except Exception as error:
        raise _fail(subject, check, f"input_signature() raised {type(error).__name__}: "
                    f"{str(error).rstrip('.')}. A tower with requires_vocabularies = False "
                    "must override input_signature() to give the specs of the features it "
                    "reads without vocabularies.") from error
    if not isinstance(specs, Mapping):
        raise _fail(subject, check, "input_signature() must return a dict of feature name to "
                    f"tf.TensorSpec, not {type(specs).__name__}.")
    missing = [name for name in tower.features if name not in specs]
    if missing:
        raise _fail(subject, check, f"it has no spec for the features {missing} the tower reads."
                    " A tower with requires_vocabularies = False overrides input_signature(): "
                    "specs = super().input_signature(), then adds a tf.TensorSpec for each "
                    "feature without a vocabulary.")
    for name, spec in specs.items():
        if not isinstance(spec, tf.TensorSpec):
            raise _fail(subject, check, f"the spec of {name!r} must be a tf.TensorSpec, not "
                        f"{spec!r}.")
        if spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
            raise _fail(subject, check, f"the spec of {name!r} must have a first (batch) "
                        f"dimension of None, to serve any batch size. It is {spec.shape}.")
    return dict(specs)


def _check_output(subject: str, tower: Tower, batch: dict[str, tf.Tensor]) -> np.ndarray:
    try:
        output = tower(batch, training=False)
    except Exception as error:
        raise _fail(subject, "output", f"calling the tower on a batch as fit feeds it "
                    f"({_describe(batch)}) raised {type(error).__name__}: {error}") from error
    if not tf.is_tensor(output):
        raise _fail(subject, "output", f"it must return a tensor, not {type(output).__name__}.")
    size = _batch_size(batch)
    if output.dtype != tf.float32:
        raise _fail(subject, "output", f"the output dtype must be float32. It is "
                    f"{output.dtype.name}.")
    if output.shape.as_list() != [size, tower.output_dim]:
        raise _fail(subject, "output", f"the output shape must be [batch, output_dim] = "
                    f"[{size}, {tower.output_dim}]. It is {output.shape.as_list()}.")
    values = output.numpy()
    if not np.all(np.isfinite(values)):
        raise _fail(subject, "output", f"the output must be finite. It is {values.tolist()}.")
    return values


def _check_input_paths(subject: str, tower: Tower, batch: dict[str, tf.Tensor],
                       rows: dict[str, np.ndarray], expected: np.ndarray) -> None:
    """The same rows padded as serving feeds them, and through ``embed``, give ``expected``."""
    check = "input paths"
    specs = tower.input_signature()

    def as_queries() -> dict[str, tf.Tensor]:
        return {name: query_tensor(name, rows[name], spec, kind=getattr(
            tower.vocabularies.get(name), "kind", None)) for name, spec in specs.items()}

    for path, run in (
        (f"padded to input_signature() as the exported index serves them ({_describe(batch)})",
         lambda: tower(batch, training=False).numpy()),
        ("converted as Index.recommend converts a table of queries",
         lambda: tower(as_queries(), training=False).numpy()),
        ("through tower.embed(table), as IndexBuilder embeds the candidates",
         lambda: tower.embed(rows, verbose=False)),
    ):
        try:
            output = np.asarray(run())
        except Exception as error:
            raise _fail(subject, check, f"the rows as fit feeds them work, but {path} raised "
                        f"{type(error).__name__}: {error}") from error
        if output.shape != expected.shape or not np.allclose(output, expected, rtol=1e-5,
                                                             atol=1e-6):
            raise _fail(subject, check, f"the same rows give other outputs {path} than as fit "
                        "feeds them (lists ragged, vectors dense). Accept both: "
                        "tfrs_kit.towers's built-in encoders read lists padded with '' or -1 "
                        "and ragged lists alike.")


def _check_determinism(subject: str, tower: Tower, batch: dict[str, tf.Tensor],
                       expected: np.ndarray) -> None:
    again = tower(batch, training=False).numpy()
    if not np.array_equal(again, expected):
        raise _fail(subject, "determinism", "the same input gave different outputs in "
                    "inference (training=False). Apply randomness such as dropout only when "
                    "training=True.")


def _check_out_of_vocabulary(subject: str, tower: Tower, batch: dict[str, tf.Tensor]) -> None:
    check = "out-of-vocabulary"
    try:
        output = tower(batch, training=False)
    except Exception as error:
        raise _fail(subject, check, f"unseen values, empty lists and NaN ({_describe(batch)}) "
                    f"raised {type(error).__name__}: {error}") from error
    size = _batch_size(batch)
    if output.shape.as_list() != [size, tower.output_dim] or not np.all(
        np.isfinite(output.numpy())
    ):
        raise _fail(subject, check, f"unseen values, empty lists and NaN ({_describe(batch)}) "
                    f"must give a finite [{size}, {tower.output_dim}] output. Got "
                    f"{output.numpy().tolist()}.")


def _check_trainable(subject: str, tower: Tower, batch: dict[str, tf.Tensor]) -> None:
    weights = tf.random.stateless_normal([_batch_size(batch), tower.output_dim], seed=[1, 2])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tower(batch, training=True) * weights)
    variables = tower.trainable_variables
    gradients = tape.gradient(loss, variables) if variables else []
    if not any(g is not None for g in gradients):
        raise _fail(subject, "trainable", "no gradient reaches any trainable weight of the "
                    f"tower ({len(variables)} trainable variables), so training cannot change it.")


def _check_config(subject: str, tower: Tower, batch: dict[str, tf.Tensor],
                  expected: np.ndarray) -> None:
    check = "config round trip"
    config = tower.get_config()
    try:
        text = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise _fail(subject, check, f"get_config() must hold only JSON values (store "
                    f"settings, not methods, layers or tensors): {error}.") from error
    try:
        clone = type(tower).from_config(copy.deepcopy(config))
        clone(batch, training=False)
        clone.set_weights(tower.get_weights())
    except Exception as error:
        raise _fail(subject, check, f"from_config(get_config()) must rebuild the tower with the "
                    f"same weights; it raised {type(error).__name__}: {error}. Store every "
                    "constructor argument in get_config().") from error
    if json.dumps(clone.get_config(), sort_keys=True) != text:
        raise _fail(subject, check, "the rebuilt tower's get_config() differs from the original's.")
    if not np.allclose(clone(batch, training=False).numpy(), expected, rtol=1e-5, atol=1e-6):
        raise _fail(subject, check, "the rebuilt tower, given the original's weights, gives "
                    "other outputs. Store every constructor argument in get_config().")


def _check_keras_name(subject: str, tower: Tower) -> None:
    check = "Keras serialisation"
    cls = type(tower)
    if tf.keras.utils.get_registered_name(cls) == cls.__name__:
        raise _fail(subject, check, f"{cls.__name__} is not registered for Keras "
                    "serialisation, so saved models using it cannot be reloaded. Decorate it "
                    "with @tfrs_kit.towers.register_tower('a_name').")
    try:
        text = json.dumps(tf.keras.utils.serialize_keras_object(tower))
        restored = tf.keras.models.model_from_json(text)
    except Exception as error:
        raise _fail(subject, check, "tf.keras.models.model_from_json(json.dumps("
                    "tf.keras.utils.serialize_keras_object(tower))) raised "
                    f"{type(error).__name__}: {error}") from error
    if type(restored) is not cls:
        raise _fail(subject, check, f"model_from_json gave a {type(restored).__qualname__}, not "
                    f"a {cls.__qualname__}.")


def _check_saved_model(subject: str, tower: Tower, specs: dict[str, tf.TensorSpec],
                       batch: dict[str, tf.Tensor], expected: np.ndarray) -> None:
    check = "SavedModel round trip"
    module = tf.Module()
    module.tower = tower
    module.serve = tf.function(lambda features: tower(features, training=False),
                               input_signature=[specs])
    with tempfile.TemporaryDirectory(prefix="tfrs_kit_check_") as directory:
        path = str(Path(directory) / "tower")
        try:
            tf.saved_model.save(module, path)
            restored = tf.saved_model.load(path)
            output = restored.serve(batch).numpy()
        except Exception as error:
            raise _fail(subject, check, f"saving a module that serves the tower through "
                        f"input_signature() and reloading it raised {type(error).__name__}: "
                        f"{error}") from error
    if not np.allclose(output, expected, rtol=1e-5, atol=1e-6):
        raise _fail(subject, check, "the reloaded SavedModel gives other outputs than the tower.")


# --- made-up inputs -------------------------------------------------------------------


def _sample_batch(specs: Mapping[str, tf.TensorSpec], vocabularies: Vocabularies, *,
                  size: int, oov: bool) -> dict[str, tf.Tensor]:
    """A batch matching ``specs``: known values, or unseen values, empty lists and NaN."""
    batch = {}
    for name, spec in specs.items():
        vocab = vocabularies.get(name)
        shape = [size] + [d if d is not None else 2 for d in spec.shape.as_list()[1:]]
        count = int(np.prod(shape))
        dtype = spec.dtype
        if dtype == tf.bool:
            values = np.arange(count) % 2 == 0
        elif dtype.is_floating:
            if oov and vocab is not None:  # a raw vector (no vocabulary) has no missing value
                values = np.resize(np.array([np.nan, 1e9, -1e9]), count)
            else:
                mean, std = (vocab.mean, vocab.std) if vocab is not None else (0.0, 1.0)
                values = mean + std * np.linspace(-1.0, 1.0, count)
        elif dtype.is_integer or dtype == tf.string:
            values = _tokens(name, vocab, dtype, count, oov)
        else:
            raise invalid_argument(
                f"input_signature()[{name!r}]", "have a bool, numeric or string dtype",
                dtype.name, hint="Pass `inputs=` to check_tower to give the batch yourself.",
            )
        values = np.asarray(values).reshape(shape)
        if len(shape) > 1 and vocab is not None and vocab.kind == "multi":
            values = _pad_rows(values, "" if dtype == tf.string else -1, oov)
        batch[name] = tf.constant(values, dtype=dtype)
    return batch


def _tokens(name: str, vocab: Any, dtype: tf.DType, count: int, oov: bool) -> np.ndarray:
    is_string = dtype == tf.string
    if oov:
        unseen = [_OOV_STRING, ""] if is_string else [_OOV_INT, 0]
        return np.resize(np.array(unseen, dtype=object if is_string else np.int64), count)
    known = list(vocab.tokens) if vocab is not None else []
    if is_string:
        known = [str(t) for t in known] or [f"{name}-{i}" for i in range(count)]
        return np.resize(np.array(known, dtype=object), count)
    known = [int(t) for t in known] or list(range(count))
    return np.resize(np.array(known, dtype=np.int64), count)


def _pad_rows(values: np.ndarray, pad: Any, oov: bool) -> np.ndarray:
    """Row i keeps ``width - i`` values (the last row of the unseen batch is empty)."""
    values = values.copy()
    width = values.shape[1]
    for row in range(values.shape[0]):
        keep = width - row if not oov else (0 if row == values.shape[0] - 1 else width)
        values[row, max(keep, 0):] = pad
    return values


def _as_rows(batch: Mapping[str, tf.Tensor], vocabularies: Vocabularies) -> dict[str, np.ndarray]:
    """A batch as a table holds it: one value, or one list without padding, per row."""
    rows = {}
    for name, value in batch.items():
        values = value.numpy()
        vocab = vocabularies.get(name)
        if values.ndim > 1 and vocab is not None and vocab.kind == "multi":
            pad = b"" if value.dtype == tf.string else -1
            column = np.empty(len(values), dtype=object)
            column[:] = [row[row != pad] for row in values]
            values = column
        rows[name] = values
    return to_table(rows, argument="inputs")


def _fit_batch(subject: str, rows: dict[str, np.ndarray],
               specs: Mapping[str, tf.TensorSpec]) -> dict[str, Any]:
    """The rows as ``fit`` feeds them: one batch of the training input pipeline."""
    dataset = make_dataset(rows, list(specs), batch_size=len(next(iter(rows.values()))))
    return next(iter(dataset))


def _as_batch(subject: str, inputs: Mapping[str, Any],
              specs: Mapping[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    missing = [name for name in specs if name not in inputs]
    if missing:
        raise invalid_argument("inputs", f"hold every feature of {subject}.input_signature()",
                               sorted(inputs), hint=f"It lacks {missing}.")
    return {name: tf.constant(inputs[name], dtype=spec.dtype) for name, spec in specs.items()}


def _batch_size(batch: Mapping[str, Any]) -> int:
    first = next(iter(batch.values()))
    return int(first.nrows() if isinstance(first, tf.RaggedTensor) else first.shape[0])


def _describe(batch: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_values(value)!r}" for name, value in batch.items())


def _values(value: Any) -> Any:
    if isinstance(value, tf.RaggedTensor):
        return value.to_list()
    return value.numpy().tolist()


# --- data sources ---------------------------------------------------------------------


def check_dataset(obj: InteractionDataset | Callable[..., Any] | str, **kwargs: Any) -> None:
    """Checks that a data source keeps the :class:`~tfrs_kit.datasets.InteractionDataset` contract.

    The roles name existing columns (ids and features in their tables and in the
    interactions, a timestamp of integer seconds); no table is empty; ids are
    strings or integers, never missing, unique in ``items`` and ``users``, of
    the same kind in every table; and every interaction's item is in ``items``
    and its user in ``users``.

    Args:
        obj: An ``InteractionDataset``, a data source (a callable returning one)
            or the name of a registered data source.
        **kwargs: Passed to the data source.

    Raises:
        ConformanceError: A check failed; the message names it.

    Example:
        >>> from tfrs_kit.datasets import synthetic
        >>> from tfrs_kit.testing import check_dataset
        >>> check_dataset(synthetic, num_interactions=300)
    """
    if isinstance(obj, InteractionDataset):
        if kwargs:
            raise invalid_argument("kwargs", "be empty when `obj` is an InteractionDataset",
                                   kwargs, hint="Pass the data source itself to give it "
                                   "arguments.")
        data, subject = obj, f"dataset {obj.name!r}"
    elif isinstance(obj, str):
        data, subject = load_dataset(obj, **kwargs), f"data source {obj!r}"
    elif callable(obj):
        subject = f"data source {getattr(obj, '__qualname__', obj)!r}"
        try:
            data = obj(**kwargs)
        except Exception as error:
            raise _fail(subject, "load", f"calling it with {kwargs!r} raised "
                        f"{type(error).__name__}: {error}") from error
        if not isinstance(data, InteractionDataset):
            raise _fail(subject, "load", f"it must return an InteractionDataset, not "
                        f"{type(data).__name__}.")
    else:
        raise invalid_argument(
            "obj", "be an InteractionDataset, a callable returning one or a registered name",
            obj, error=TypeError,
        )
    _check_roles(subject, data)
    _check_ids(subject, data)


def _check_roles(subject: str, data: InteractionDataset) -> None:
    check = "roles"
    if not isinstance(data.name, str) or not data.name:
        raise _fail(subject, check, f"`name` must be a non-empty string. It is {data.name!r}.")
    tables = {
        "interactions": (data.interactions,
                         (data.user_id, data.item_id, *data.user_features, *data.item_features)),
        "users": (data.users, data.user_columns),
        "items": (data.items, data.item_columns),
    }
    for table, (frame, columns) in tables.items():
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise _fail(subject, check, f"`{table}` must have the columns {absent} its roles "
                        f"name. It has {[str(c) for c in frame.columns]}.")
        if frame.columns.duplicated().any():
            raise _fail(subject, check, f"`{table}` has duplicated column names.")
        if frame.empty:
            raise _fail(subject, check, f"`{table}` must not be empty.")
    overlap = set(data.user_columns) & set(data.item_columns)
    if overlap:
        raise _fail(subject, check, f"user and item columns must be distinct; both have "
                    f"{sorted(overlap)}.")
    if data.timestamp is not None:
        if data.timestamp not in data.interactions.columns:
            raise _fail(subject, check, f"`interactions` must have the timestamp column "
                        f"{data.timestamp!r}.")
        stamps = data.interactions[data.timestamp]
        if not pd.api.types.is_integer_dtype(stamps) or stamps.isna().any():
            raise _fail(subject, check, f"the timestamp column {data.timestamp!r} must hold "
                        f"integer seconds without missing values. Its dtype is {stamps.dtype}.")


def _check_ids(subject: str, data: InteractionDataset) -> None:
    check = "ids"
    columns = {
        ("interactions", data.user_id): data.interactions[data.user_id],
        ("interactions", data.item_id): data.interactions[data.item_id],
        ("users", data.user_id): data.users[data.user_id],
        ("items", data.item_id): data.items[data.item_id],
    }
    kinds = {}
    for (table, column), values in columns.items():
        missing = values.isna()
        if missing.any():
            raise _fail(subject, check, f"`{table}[{column!r}]` must hold no missing ids; "
                        f"{int(missing.sum())} are missing, the first at row "
                        f"{int(np.flatnonzero(missing.to_numpy())[0])}.")
        kinds[(table, column)] = _dataset_id_kind(values)
        if kinds[(table, column)] is None:
            raise _fail(subject, check, f"`{table}[{column!r}]` must hold string or integer "
                        f"ids. Its dtype is {values.dtype}.")
    for table, column in (("users", data.user_id), ("items", data.item_id)):
        duplicated = columns[(table, column)].duplicated()
        if duplicated.any():
            example = columns[(table, column)][duplicated].iloc[0]
            raise _fail(subject, check, f"`{table}` must have one row per id; "
                        f"{int(duplicated.sum())} ids repeat, such as {example!r}.")
        if kinds[(table, column)] != kinds[("interactions", column)]:
            raise _fail(subject, check, f"`{table}[{column!r}]` holds {kinds[(table, column)]} "
                        f"ids but `interactions[{column!r}]` "
                        f"{kinds[('interactions', column)]} ids.")
        known = pd.Index(columns[(table, column)])
        events = columns[("interactions", column)]
        unknown = ~events.isin(known)
        if unknown.any():
            raise _fail(subject, check, f"every interaction's {column!r} must be in `{table}`; "
                        f"{int(unknown.sum())} are not, such as {events[unknown].iloc[0]!r}.")


def _dataset_id_kind(values: pd.Series) -> str | None:
    """``"integer"`` or ``"string"``; None for ids a data source may not hold.

    :func:`~tfrs_kit._validation.id_kind` calls floats and booleans numbers too,
    but a data source's numeric ids are integers (an integer dtype).
    """
    kind = id_kind(values)
    if kind == "number":
        return "integer" if pd.api.types.is_integer_dtype(values) else None
    return "string" if kind == "string" else None

