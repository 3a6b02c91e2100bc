"""The chunked Parquet reader (what ``prepare`` spills from and the streamed fit reads)
holds a chunk in memory, not the shard: Arrow's pool stays bounded while a shard of many
row groups is read, and the chunks are the file's rows in order."""

import numpy as np
import pytest

from tfrs_kit.data._files import iter_arrow

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROW_GROUPS, GROUP_ROWS = 40, 2_000


def test_parquet_chunks_hold_a_chunk_not_the_shard(tmp_path):
    rng = np.random.default_rng(0)
    rows = ROW_GROUPS * GROUP_ROWS
    # Random 64-character strings: ~10 MB that compression cannot shrink.
    letters = rng.integers(97, 123, (rows, 64), dtype=np.uint8)
    text = letters.view("S64").ravel().astype(str)
    table = pa.table({"item_id": pa.array(text), "n": pa.array(np.arange(rows))})
    path = tmp_path / "shard.parquet"
    pq.write_table(table, path, row_group_size=GROUP_ROWS)
    whole = pq.read_table(path).nbytes
    del table
    before = pa.total_allocated_bytes()
    most, seen = 0, []
    for chunk in iter_arrow(str(path), {"item_id": "string", "n": "int"},
                            rows_per_chunk=500):
        seen.append(chunk.column("n").to_numpy())
        most = max(most, pa.total_allocated_bytes() - before)
        del chunk
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(rows))
    # Arrow's pre-buffering reader kept every row group read: the whole shard at the end.
    assert most < whole / 4, (most, whole)
