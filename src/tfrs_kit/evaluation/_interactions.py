"""The train and test interactions :func:`~tfrs_kit.evaluate` scores against, integer-coded.

Only the user and item columns are read. A table in memory is coded whole; files
(``tk.data.Shards``, paths) are read chunk by chunk, each chunk's ids coded where they
lie (Arrow's dictionary encoding for Parquet and CSV, no Python object per row) and
the chunks' codes merged at the end. What stays is an integer code per row and each
column's distinct ids, never the raw log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_no_missing, check_same_kind
from tfrs_kit.data._files import is_files, iter_tables
from tfrs_kit.data._table import Table, TableLike, to_table

__all__ = ["CodedIds", "Interactions"]

_CHUNK_ROWS = 1 << 20  # rows of a file read at once


@dataclasses.dataclass(frozen=True)
class CodedIds:
    """An id column as its distinct ids and, per row, the position of its id among them."""

    codes: np.ndarray
    uniques: np.ndarray

    def positions(self, index: pd.Index) -> np.ndarray:
        """Each row's id as a position in ``index`` (-1 where ``index`` lacks it)."""
        return index.get_indexer(pd.Index(self.uniques))[self.codes]


class Interactions:
    """The train and test logs, indexed by test user (shared by every model evaluated).

    Attributes:
        users: The distinct test users, sorted; a model scores them in this order.
        user_codes: Per test row, its user's position in ``users``.
        test_item_ids: The distinct test items.
        n_relevant: Per test user, its distinct test items.
        train_rows: Per training row, its user's position in ``users`` (-1: not a test user).
        num_test_interactions: The test log's rows.
    """

    def __init__(self, train: tuple[CodedIds, CodedIds], test: tuple[CodedIds, CodedIds],
                 user_id: str, item_id: str) -> None:
        self.user_id, self.item_id = user_id, item_id
        for position, (column, what) in enumerate(((user_id, "user ids"),
                                                   (item_id, "item ids"))):
            check_same_kind(f"test[{column!r}]", test[position].uniques,
                            train[position].uniques, what=what,
                            reference_name=f"train[{column!r}]")
        self._train_users, self._train_items = train
        test_users, self._test_items = test
        self.users = test_users.uniques
        self.user_codes = test_users.codes
        self.test_item_ids = self._test_items.uniques
        self.num_test_interactions = len(self.user_codes)
        # Distinct (user, item) test pairs: every one is relevant, even if never rankable.
        n_items = max(len(self.test_item_ids), 1)
        keys = np.unique(self.user_codes * n_items + self._test_items.codes)
        self.n_relevant = np.bincount(keys // n_items, minlength=len(self.users))
        self.train_rows = self._train_users.positions(pd.Index(self.users))

    @classmethod
    def read(cls, train: TableLike, test: TableLike, user_id: str, item_id: str, *,
             settings: Mapping[str, str] | None = None) -> Interactions:
        """The interactions of ``train`` and ``test``: tables, or files read chunk by chunk."""
        return cls(read_ids(train, "train", user_id, item_id, settings),
                   read_ids(test, "test", user_id, item_id, settings), user_id, item_id)

    @property
    def num_train_users(self) -> int:
        return len(self._train_users.uniques)

    def test_columns(self, catalogue: pd.Index) -> np.ndarray:
        """Per test row, its item's catalogue column (-1 outside the catalogue)."""
        return self._test_items.positions(catalogue)

    def matrix(self, rows: np.ndarray, cols: np.ndarray, n_items: int) -> sp.csr_matrix:
        """A users x catalogue 0/1 matrix of the pairs whose row and column are both >= 0."""
        keep = (rows >= 0) & (cols >= 0)
        data = np.ones(int(keep.sum()), dtype=np.int8)
        matrix = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(len(self.users), n_items))
        matrix.sum_duplicates()
        matrix.sort_indices()
        return matrix

    def relevant(self, catalogue: pd.Index) -> sp.csr_matrix:
        """Each test user's test items, as catalogue columns."""
        return self.matrix(self.user_codes, self.test_columns(catalogue), len(catalogue))

    def seen(self, catalogue: pd.Index) -> sp.csr_matrix:
        """Each test user's training items, as catalogue columns (masked when ranking)."""
        return self.matrix(self.train_rows, self._train_items.positions(catalogue),
                           len(catalogue))

    def user_counts(self, catalogue: pd.Index) -> np.ndarray:
        """Distinct training users per catalogue item (0 for items never trained on)."""
        n_items = max(len(self._train_items.uniques), 1)
        keys = np.unique(self._train_users.codes * n_items + self._train_items.codes)
        per_item = np.bincount(keys % n_items, minlength=n_items).astype(np.float64)
        where = pd.Index(self._train_items.uniques).get_indexer(catalogue)
        return np.where(where >= 0, per_item[np.maximum(where, 0)], 0.0)


def read_ids(data: TableLike, argument: str, user_id: str, item_id: str,
             settings: Mapping[str, str] | None = None) -> tuple[CodedIds, CodedIds]:
    """The user and item columns of ``data``, coded; files read chunk by chunk.

    Raises:
        ValueError: A missing column or id, or no rows.
    """
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {user_id: [], item_id: []}
    for chunk in _chunks(data, argument, [user_id, item_id], settings):
        for column, what in ((user_id, "user ids"), (item_id, "item ids")):
            parts[column].append(_code(chunk[column], f"{argument}[{column!r}]", what))
    if not sum(len(codes) for codes, _ in parts[user_id]):
        raise invalid_argument(argument, "have at least one row", "files without rows")
    return _merge(parts[user_id], sort=True), _merge(parts[item_id], sort=False)


def _chunks(data: TableLike, argument: str, columns: list[str],
            settings: Mapping[str, str] | None) -> Iterator[Table | dict[str, Any]]:
    if not is_files(data):
        yield to_table(data, argument=argument, columns=columns, settings=settings)
        return
    yield from iter_tables(data, argument=argument, columns=columns, settings=settings,
                           rows_per_chunk=_CHUNK_ROWS,
                           keep_arrow=lambda name, kind: kind in ("string", "int"))


def _code(values: Any, argument: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's codes (int64) and distinct ids, in order of first appearance."""
    if isinstance(values, np.ndarray):
        check_no_missing(argument, values, what=what)
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64), np.asarray(uniques)
    if values.null_count:  # an Arrow array: a missing id is named like a table's
        check_no_missing(argument, values.to_numpy(zero_copy_only=False), what=what)
    encoded = values.dictionary_encode()
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            encoded.dictionary.to_numpy(zero_copy_only=False))


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], *, sort: bool) -> CodedIds:
    """The chunks' codes as codes into one set of distinct ids (sorted if ``sort``)."""
    if len(parts) == 1 and not sort:
        return CodedIds(*parts[0])
    chunk_uniques = [uniques for _, uniques in parts]
    merged_codes, uniques = pd.factorize(
        chunk_uniques[0] if len(parts) == 1 else _concatenate(chunk_uniques), sort=sort)
    codes = np.empty(sum(len(c) for c, _ in parts), dtype=np.int64)
    start = offset = 0
    for chunk_codes, chunk_unique in parts:
        codes[start:start + len(chunk_codes)] = merged_codes[offset:offset + len(chunk_unique)][
            chunk_codes]
        start += len(chunk_codes)
        offset += len(chunk_unique)
    return CodedIds(codes, np.asarray(uniques))


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    if all(part.dtype == parts[0].dtype for part in parts):
        return np.concatenate(parts)
    out = np.empty(sum(len(p) for p in parts), dtype=object)  # kinds differ: keep each value
    out[:] = [value for part in parts for value in part]
    return out
