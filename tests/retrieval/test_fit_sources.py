"""``fit`` streams a ``tk.data.Shards`` log by default, never reading it whole."""

import pandas as pd
import pytest
import tensorflow as tf
from checkerboard_models import id_model as _model
from checkerboard_models import recall_at_1 as _recall_at_1

import tfrs_kit as tk
from shard_logs import refuse_whole_reads, write_shards
from tfrs_kit.retrieval._streamed import DEFAULT_SHUFFLE_BUFFER, streaming_buffer

pytest.importorskip("pyarrow")


def _write_shards(log, folder, shards=3):
    write_shards(pd.DataFrame(log), folder, shards)
    return tk.data.Shards(str(folder))


def test_only_shards_stream_by_default(tmp_path):
    source = _write_shards({"user_id": ["a"] * 3, "item_id": ["x"] * 3}, tmp_path / "log")
    assert streaming_buffer(source, None) == DEFAULT_SHUFFLE_BUFFER == 65536
    assert streaming_buffer(source, 10) == 10
    assert streaming_buffer(list(source.paths), None) is None  # paths: read into memory


@pytest.mark.parametrize("options", [{}, {"logq_correction": True, "num_random_negatives": 4}])
def test_fit_from_shards_streams_and_learns_the_checkerboard(checkerboard, tmp_path,
                                                             monkeypatch, options):
    source = _write_shards(checkerboard, tmp_path / "log")
    tf.keras.utils.set_random_seed(1)
    model = _model(checkerboard, **options)
    refuse_whole_reads(monkeypatch)
    history = model.fit(source, epochs=3, batch_size=128, seed=1, verbose=0)
    monkeypatch.undo()
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert _recall_at_1(model, checkerboard) == 1.0
    expected = pd.Series(checkerboard["item_id"]).value_counts(normalize=True)
    assert model.candidate_frequencies_.to_dict() == pytest.approx(expected.to_dict())


def test_fit_from_paths_still_reads_into_memory(tmp_path, monkeypatch):
    log = {"user_id": ["a", "b", "a", "b"], "item_id": ["x", "y", "x", "y"]}
    source = _write_shards(log, tmp_path / "log", shards=2)
    model = _model(log)
    refuse_whole_reads(monkeypatch)
    with pytest.raises(AssertionError, match="read into memory"):
        model.fit(list(source.paths), epochs=1, verbose=0)


def test_shards_with_a_validation_fraction_ask_for_validation_data(tmp_path):
    log = {"user_id": ["a", "b", "a", "b"], "item_id": ["x", "y", "x", "y"]}
    source = _write_shards(log, tmp_path / "log", shards=2)
    with pytest.raises(ValueError, match=r"`validation_fraction` must be None when streaming"):
        _model(log).fit(source, validation_fraction=0.5, verbose=0)
