"""A streamed ``fit`` runs one optimizer step per batch: its dataset's length is known
from the shards' rows (of a dataset of unknown length Keras also counts, as a step, the
failed read that ends the first epoch)."""

import numpy as np
import pandas as pd
import pytest

import tfrs_kit as tk

pytest.importorskip("pyarrow")


@pytest.mark.parametrize("epochs", [1, 3])
def test_one_optimizer_step_per_batch(tmp_path, epochs):
    rng = np.random.default_rng(0)
    log = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, 30, 1000)],
                        "item_id": [f"i{i}" for i in rng.integers(0, 20, 1000)]})
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    log.iloc[:450].to_parquet(paths[0], index=False)  # 1,000 rows: 7 full batches and 104
    log.iloc[450:].to_parquet(paths[1], index=False)
    vocabularies = tk.VocabularyBuilder().fit(log)
    model = tk.TwoTowerRetrieval(tk.Tower(vocabularies, features=["user_id"], output_dim=4),
                                 tk.Tower(vocabularies, features=["item_id"], output_dim=4))
    history = model.fit(paths, epochs=epochs, batch_size=128, shuffle_buffer=256, verbose=0)
    assert len(history.epoch) == epochs
    assert int(model.optimizer.iterations.numpy()) == epochs * 8
