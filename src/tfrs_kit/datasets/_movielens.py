"""MovieLens from tensorflow-datasets or from GroupLens files, with tfds's feature names.

Both sources give the same columns and dtypes, mirroring ``movielens/{variant}-ratings``
of tensorflow-datasets (see ``tensorflow_datasets/structured/movielens*.py``): ids as
strings, ``movie_genres`` as tfds's genre label numbers (:data:`MOVIELENS_GENRES`),
``user_occupation_label`` as tfds's occupation numbers (:data:`MOVIELENS_OCCUPATIONS`).
The GroupLens files are parsed with vectorised pandas, not line by line; the
tensorflow-datasets path is ``_movielens_tfds``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from tfrs_kit._errors import invalid_argument
from tfrs_kit._validation import check_choice
from tfrs_kit.datasets._base import InteractionDataset, split_rows
from tfrs_kit.datasets._movielens_tfds import from_tfds

__all__ = ["MOVIELENS_GENRES", "MOVIELENS_OCCUPATIONS", "movielens"]

#: Genre names by label number, as in tfds's ``movie_genres`` ClassLabel.
MOVIELENS_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "Unknown", "War", "Western", "(no genres listed)",
)  # fmt: skip

#: Occupation names by label number, as in tfds's ``user_occupation_label`` ClassLabel.
MOVIELENS_OCCUPATIONS: tuple[str, ...] = (
    "academic/educator", "artist", "clerical/admin", "customer service",
    "doctor/health care", "entertainment", "executive/managerial", "farmer", "homemaker",
    "lawyer", "librarian", "other/not specified", "programmer", "retired",
    "sales/marketing", "scientist", "self-employed", "student", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

# The 19 genre flags of ml-100k's u.item, in file order ("Children's" renamed as tfds does).
_GENRES_100K = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# ml-100k occupation text -> the label shared with ml-1m (tfds's conversion table).
_OCCUPATIONS_100K = {
    "administrator": "clerical/admin", "artist": "artist", "doctor": "doctor/health care",
    "educator": "academic/educator", "engineer": "technician/engineer",
    "entertainment": "entertainment", "executive": "executive/managerial",
    "healthcare": "doctor/health care", "homemaker": "homemaker", "lawyer": "lawyer",
    "librarian": "librarian", "marketing": "sales/marketing", "none": "other/not specified",
    "other": "other/not specified", "programmer": "programmer", "retired": "retired",
    "salesman": "sales/marketing", "scientist": "scientist", "student": "student",
    "technician": "technician/engineer", "writer": "writer",
}  # fmt: skip
# ml-1m users.dat occupation number -> text; both student kinds have the label "student".
_OCCUPATIONS_1M = (
    "other/not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care", "executive/managerial",
    "farmer", "homemaker", "K-12 student", "lawyer", "programmer", "retired",
    "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
_AGE_THRESHOLDS = np.array([18, 25, 35, 45, 50, 56])

# The column order of every MovieLens table (absent columns are skipped).
_USER_FEATURES = (
    "user_gender", "bucketized_user_age", "raw_user_age", "user_occupation_label",
    "user_occupation_text", "user_zip_code",
)  # fmt: skip
_ITEM_FEATURES = ("movie_title", "movie_genres")
_EVENT_COLUMNS = ("user_id", "movie_id", "timestamp", "user_rating")

Opener = Callable[[str], IO[bytes]]


@dataclasses.dataclass(frozen=True)
class _Layout:
    folder: str
    files: tuple[str, ...]
    reader: Callable[[Opener], tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]
    in_tfds: bool = True


def movielens(
    variant: str = "100k",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: str = "auto",
) -> InteractionDataset:
    """MovieLens ratings with movie and user features, named as in tensorflow-datasets.

    ``interactions`` columns, in order (the last six only for "100k" and "1m";
    ``raw_user_age`` only for "100k"): ``user_id`` (str), ``movie_id`` (str),
    ``timestamp`` (int64 seconds), ``user_rating`` (float32), ``movie_title`` (str),
    ``movie_genres`` (object: 1-D int64 arrays of :data:`MOVIELENS_GENRES` labels),
    ``user_gender`` (bool, True for male), ``bucketized_user_age`` (float32),
    ``raw_user_age`` (float32), ``user_occupation_label`` (int64, a label of
    :data:`MOVIELENS_OCCUPATIONS`), ``user_occupation_text`` (str) and
    ``user_zip_code`` (str). ``items`` holds the movie columns, one row per movie;
    ``users`` the user columns, one row per user.

    Args:
        variant: "100k", "1m", "20m", "25m", "latest-small" or "latest" (the last
            only from files). A leading "ml-" is accepted.
        data_dir: With ``source="auto"`` or ``"files"``: a GroupLens folder such as
            ``ml-100k`` (or the folder above it), or the ``.zip`` downloaded from
            GroupLens. With ``source="tfds"``: tfds's own data directory.
        source: "auto" reads files when ``data_dir`` is given and uses
            tensorflow-datasets otherwise; "files" or "tfds" force one.

    Returns:
        An :class:`InteractionDataset` named ``"movielens-{variant}"``, with
        ``user_id="user_id"``, ``item_id="movie_id"``, ``timestamp="timestamp"``.

    Raises:
        ValueError: Unknown ``variant`` or ``source``.
        FileNotFoundError: ``data_dir`` lacks the files of the variant.
        ImportError: tensorflow-datasets is needed but not installed.

    Example:
        >>> data = movielens("100k", data_dir="ml-100k")  # doctest: +SKIP
        >>> data.num_interactions, data.num_users, data.num_items  # doctest: +SKIP
        (100000, 943, 1682)
        >>> MOVIELENS_GENRES[:3]
        ('Action', 'Adventure', 'Animation')
    """
    variant = check_choice("variant", variant, [*_LAYOUTS, *(f"ml-{k}" for k in _LAYOUTS)],
                           what="MovieLens variant")
    key = variant.removeprefix("ml-")
    source = check_choice("source", source, ("auto", "files", "tfds"), what="source")
    layout = _LAYOUTS[key]
    if source == "files" or (source == "auto" and data_dir is not None):
        if data_dir is None:
            raise invalid_argument(
                "data_dir",
                'be given when source="files"',
                data_dir,
                hint=f"Point it at the GroupLens folder {layout.folder!r} or its .zip.",
            )
        with _open_files(Path(os.fspath(data_dir)), layout) as opener:
            interactions, items, users = layout.reader(opener)
    else:
        if not layout.in_tfds:
            raise invalid_argument(
                "variant",
                "be one that tensorflow-datasets provides when reading from tfds",
                variant,
                hint=f"Download {layout.folder}.zip from GroupLens and pass `data_dir`.",
            )
        interactions, items, users = from_tfds(
            key, data_dir, event_columns=_EVENT_COLUMNS, item_features=_ITEM_FEATURES,
            user_features=_USER_FEATURES)
    user_features = tuple(c for c in _USER_FEATURES if c in interactions.columns)
    return InteractionDataset(
        interactions=interactions,
        items=items,
        users=users,
        user_id="user_id",
        item_id="movie_id",
        timestamp="timestamp",
        user_features=user_features,
        item_features=_ITEM_FEATURES,
        name=f"movielens-{key}",
    )


# --- finding the files ---------------------------------------------------------------


@contextlib.contextmanager
def _open_files(data_dir: Path, layout: _Layout) -> Iterator[Opener]:
    """Finds the layout's files in a folder or a zip; yields ``open(name) -> bytes IO``."""
    files = layout.files
    if data_dir.is_file() and zipfile.is_zipfile(data_dir):
        with zipfile.ZipFile(data_dir) as archive:
            names = archive.namelist()
            folders = {n.rsplit("/", 1)[0] + "/" if "/" in n else "" for n in names}
            prefix = next(
                (
                    f
                    for f in sorted(folders, key=lambda f: (f.count("/"), f))
                    if all(f + name in names for name in files)
                ),
                None,
            )
            if prefix is not None:
                yield _Files(lambda name: archive.open(prefix + name),
                             f"{data_dir}:{prefix.rstrip('/')}" if prefix else f"{data_dir}:")
                return
        found = sorted(n for n in names if not n.endswith("/"))
    elif data_dir.is_dir():
        candidates = [data_dir, data_dir / layout.folder]
        candidates += sorted(p for p in data_dir.iterdir() if p.is_dir())
        folder = next((c for c in candidates if all((c / f).is_file() for f in files)), None)
        if folder is not None:
            yield _Files(lambda name: (folder / name).open("rb"), str(folder))
            return
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in data_dir.iterdir())
    elif data_dir.is_file() and data_dir.suffix.lower() == ".zip":
        raise ValueError(
            f"`data_dir` must be a readable .zip file. Received: data_dir={str(data_dir)!r}, "
            "which is not a valid zip archive (a truncated or corrupt download?). Download "
            f"{layout.folder}.zip from https://grouplens.org/datasets/movielens/ again."
        )
    else:
        raise FileNotFoundError(
            f"`data_dir` must be an existing folder or .zip file. Received: "
            f"data_dir={str(data_dir)!r}, which does not exist or is neither."
        )
    more = f" (and {len(found) - 20} more)" if len(found) > 20 else ""
    raise FileNotFoundError(
        f"`data_dir` must contain the MovieLens files {', '.join(files)} (directly or in a "
        f"folder {layout.folder!r}). Received: data_dir={str(data_dir)!r}, which contains: "
        f"{', '.join(found[:20]) + more if found else 'nothing'}. Download "
        f"{layout.folder}.zip from https://grouplens.org/datasets/movielens/ and pass the "
        ".zip or its folder."
    )


# --- parsing GroupLens files ------------------------------------------------------------


class _Files:
    """Opens the layout's files by name, and says where each one is for error messages."""

    def __init__(self, open_file: Opener, where: str) -> None:
        self._open = open_file
        self.where = where

    def __call__(self, name: str) -> IO[bytes]:
        return self._open(name)

    def label(self, name: str) -> str:
        return self.where + ("" if self.where.endswith(":") else "/") + name


def _read_table(
    opener: Opener,
    name: str,
    columns: list[str],
    *,
    sep: str,
    encoding: str = "latin-1",
    header: bool = False,
    dtype: dict[str, Any] | None = None,
    numeric: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One GroupLens file as a frame; a malformed one is a ValueError naming file and line.

    Columns in ``numeric`` must hold a number on every line (a short line
    leaves its last fields empty, which is caught here too).
    """
    label = _label(opener, name)
    try:
        with opener(name) as handle:
            raw = handle.read()
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
        raise ValueError(
            f"The MovieLens file {label} cannot be read: {type(error).__name__}: {error}. "
            "The download is truncated or corrupt: download it again."
        ) from error
    if len(sep) > 1:
        # ml-1m's "::" separator: the C parser takes one character only. A tab never
        # occurs in these files.
        raw = raw.replace(sep.encode(), b"\t")
        sep = "\t"
    try:
        frame = pd.read_csv(
            io.BytesIO(raw), sep=sep, header=0 if header else None, names=columns,
            encoding=encoding, dtype=dtype,
            quoting=csv.QUOTE_MINIMAL if header else csv.QUOTE_NONE,
            keep_default_na=False, engine="c",
        )
    except UnicodeDecodeError as error:
        line = _line_of_byte(raw, encoding)
        raise ValueError(
            f"The MovieLens file {label}, line {line}, must be {encoding} text: {error.reason} "
            f"({error.object[error.start:error.start + 8]!r}). The file is corrupt or not from "
            "GroupLens: download it again."
        ) from error
    except (pd.errors.ParserError, ValueError) as error:
        raise ValueError(
            f"The MovieLens file {label} is malformed: {error}. Download it again."
        ) from error
    for column in numeric:
        frame[column] = _numbers(frame[column], label, column, header=header)
    return frame


def _label(opener: Opener, name: str) -> str:
    return opener.label(name) if isinstance(opener, _Files) else name


def _line_of_byte(raw: bytes, encoding: str) -> int:
    """The 1-based line holding the first byte that does not decode."""
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as error:
        return raw.count(b"\n", 0, error.start) + 1
    return 0


def _numbers(values: pd.Series, label: str, column: str, *, header: bool) -> pd.Series:
    """A column as numbers; the first line that holds none is named in a ValueError."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        line = int(bad[0]) + 1 + int(header)
        raise ValueError(
            f"The MovieLens file {label}, line {line}, must hold a number in column "
            f"{column!r}. Received: {values.iloc[bad[0]]!r} ({len(bad)} such lines). The file "
            "is malformed (a short or edited line): download it again."
        )
    return numbers


def _check_unique(ids: np.ndarray, label: str, column: str, *, header: bool) -> None:
    """Raises a ValueError naming the line of the first repeated id of a file."""
    repeated = np.flatnonzero(pd.Series(ids).duplicated().to_numpy())
    if len(repeated):
        line = int(repeated[0]) + 1 + int(header)
        raise ValueError(
            f"The MovieLens file {label}, line {line}, repeats the {column} "
            f"{ids[repeated[0]]!r}: each must appear once. The file is malformed."
        )


def _string_ids(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Integer ids as strings, converting each distinct id once."""
    codes, uniques = pd.factorize(values)
    return pd.array(np.asarray(uniques).astype(str).astype(object), dtype="str").take(codes)


def _events(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": _string_ids(frame["user_id"].to_numpy()),
            "movie_id": _string_ids(frame["movie_id"].to_numpy()),
            "timestamp": frame["timestamp"].to_numpy(np.int64),
            "user_rating": frame["user_rating"].to_numpy(np.float32),
        }
    )


def _movies(ids: np.ndarray, titles: pd.Series, genres: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": _string_ids(ids),
            "movie_title": pd.array(titles.to_numpy(object), dtype="str"),
            "movie_genres": genres,
        }
    )


def _genre_lists(genres: pd.Series, what: str) -> np.ndarray:
    """'A|B' strings -> object column of int64 arrays of tfds genre labels, in order."""
    lists = genres.str.split("|")
    flat = lists.explode().replace("Children's", "Children")
    labels = flat.map({g: i for i, g in enumerate(MOVIELENS_GENRES)})
    if labels.isna().any():
        unknown = sorted(set(flat[labels.isna()]))
        raise ValueError(
            f"The genres in {what} must be MovieLens genres. Received unknown genres "
            f"{unknown}. Known: {', '.join(MOVIELENS_GENRES)}."
        )
    return split_rows(labels.to_numpy(np.int64), lists.map(len).to_numpy(np.int64))


def _join(
    events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, what: str
) -> pd.DataFrame:
    """Events with the movie (and user) columns joined on, in the canonical order."""
    columns: dict[str, Any] = {str(name): column for name, column in events.items()}
    for table, key, label in ((items, "movie_id", "movies"), (users, "user_id", "users")):
        rows = pd.Index(table[key]).get_indexer(events[key])
        if (rows < 0).any():
            missing = events[key][rows < 0].unique()[:5].tolist()
            raise ValueError(
                f"Every {key} of the ratings in {what} must appear in its {label} file. "
                f"Received ratings with unknown ids such as {missing}."
            )
        for column in table.columns[1:]:
            columns[column] = table[column].array.take(rows)
    order = [c for c in (*_EVENT_COLUMNS, *_ITEM_FEATURES, *_USER_FEATURES) if c in columns]
    return pd.DataFrame({c: columns[c] for c in order})


def _read_100k(opener: Opener) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    events = _events(
        _read_table(opener, "u.data", ["user_id", "movie_id", "user_rating", "timestamp"],
                    sep="\t", numeric=("user_id", "movie_id", "user_rating", "timestamp"))
    )
    flags = [f"g{i}" for i in range(len(_GENRES_100K))]
    item = _read_table(
        opener,
        "u.item",
        ["movie_id", "movie_title", "release", "video", "url", *flags],
        sep="|",
        dtype={"movie_title": object},
        numeric=("movie_id", *flags),
    )
    _check_unique(item["movie_id"].to_numpy(), _label(opener, "u.item"), "movie id",
                  header=False)
    flag_matrix = item[flags].to_numpy(np.int64) == 1
    to_label = np.array([MOVIELENS_GENRES.index(g) for g in _GENRES_100K], dtype=np.int64)
    _, flag = np.nonzero(flag_matrix)  # row-major: each movie's genres in flag order
    genres = split_rows(to_label[flag], flag_matrix.sum(axis=1))
    items = _movies(item["movie_id"].to_numpy(), item["movie_title"], genres)
    user = _read_table(
        opener,
        "u.user",
        ["user_id", "age", "gender", "occupation", "zip"],
        sep="|",
        dtype={"zip": object, "occupation": object, "gender": object},
        numeric=("user_id", "age"),
    )
    _check_unique(user["user_id"].to_numpy(), _label(opener, "u.user"), "user id",
                  header=False)
    age = user["age"].to_numpy(np.int64)
    buckets = np.concatenate([[1], _AGE_THRESHOLDS])
    occupation = user["occupation"].to_numpy(object)
    unknown = sorted(set(occupation) - set(_OCCUPATIONS_100K))
    if unknown:
        raise ValueError(
            f"The occupations in u.user must be those of MovieLens 100K. Received unknown "
            f"occupations {unknown}. Known: {', '.join(sorted(_OCCUPATIONS_100K))}."
        )
    label = {text: MOVIELENS_OCCUPATIONS.index(name) for text, name in _OCCUPATIONS_100K.items()}
    users = pd.DataFrame(
        {
            "user_id": _string_ids(user["user_id"].to_numpy()),
            "user_gender": user["gender"].to_numpy(object) == "M",
            "bucketized_user_age": buckets[np.searchsorted(_AGE_THRESHOLDS, age, "right")].astype(
                np.float32
            ),
            "raw_user_age": age.astype(np.float32),
            "user_occupation_label": pd.Series(occupation).map(label).to_numpy(np.int64),
            "user_occupation_text": pd.array(occupation, dtype="str"),
            "user_zip_code": pd.array(user["zip"].to_numpy(object), dtype="str"),
        }
    )
    return _join(events, items, users, "ml-100k"), items, users


def _read_1m(opener: Opener) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    events = _events(
        _read_table(
            opener, "ratings.dat", ["user_id", "movie_id", "user_rating", "timestamp"], sep="::",
            numeric=("user_id", "movie_id", "user_rating", "timestamp"),
        )
    )
    movie = _read_table(
        opener,
        "movies.dat",
        ["movie_id", "movie_title", "genres"],
        sep="::",
        dtype={"movie_title": object, "genres": object},
        numeric=("movie_id",),
    )
    _check_unique(movie["movie_id"].to_numpy(), _label(opener, "movies.dat"), "movie id",
                  header=False)
    items = _movies(
        movie["movie_id"].to_numpy(),
        movie["movie_title"],
        _genre_lists(movie["genres"], "movies.dat"),
    )
    user = _read_table(
        opener,
        "users.dat",
        ["user_id", "gender", "age", "occupation", "zip"],
        sep="::",
        dtype={"zip": object, "gender": object},
        numeric=("user_id", "age", "occupation"),
    )
    _check_unique(user["user_id"].to_numpy(), _label(opener, "users.dat"), "user id",
                  header=False)
    index = user["occupation"].to_numpy(np.int64)
    if ((index < 0) | (index >= len(_OCCUPATIONS_1M))).any():
        raise ValueError(
            f"The occupation numbers in users.dat must be between 0 and "
            f"{len(_OCCUPATIONS_1M) - 1}. Received: {sorted(set(index.tolist()))}."
        )
    text = np.array(_OCCUPATIONS_1M, dtype=object)[index]
    label_names = np.where(np.isin(text, ["K-12 student", "college/grad student"]), "student", text)
    label = {name: i for i, name in enumerate(MOVIELENS_OCCUPATIONS)}
    users = pd.DataFrame(
        {
            "user_id": _string_ids(user["user_id"].to_numpy()),
            "user_gender": user["gender"].to_numpy(object) == "M",
            "bucketized_user_age": user["age"].to_numpy(np.float32),
            "user_occupation_label": np.array([label[n] for n in label_names], dtype=np.int64),
            "user_occupation_text": pd.array(text, dtype="str"),
            "user_zip_code": pd.array(user["zip"].to_numpy(object), dtype="str"),
        }
    )
    return _join(events, items, users, "ml-1m"), items, users


def _read_csv_layout(opener: Opener) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = _read_table(
        opener,
        "ratings.csv",
        ["user_id", "movie_id", "user_rating", "timestamp"],
        sep=",",
        encoding="utf-8",
        header=True,
        numeric=("user_id", "movie_id", "user_rating", "timestamp"),
    )
    events = _events(ratings)
    movie = _read_table(
        opener,
        "movies.csv",
        ["movie_id", "movie_title", "genres"],
        sep=",",
        encoding="utf-8",
        header=True,
        dtype={"movie_title": object, "genres": object},
        numeric=("movie_id",),
    )
    _check_unique(movie["movie_id"].to_numpy(), _label(opener, "movies.csv"), "movie id",
                  header=True)
    items = _movies(
        movie["movie_id"].to_numpy(),
        movie["movie_title"],
        _genre_lists(movie["genres"], "movies.csv"),
    )
    users = pd.DataFrame({"user_id": pd.unique(events["user_id"])})
    return _join(events, items, users, "the ratings.csv layout"), items, users


_CSV_FILES = ("ratings.csv", "movies.csv")
_LAYOUTS: dict[str, _Layout] = {
    "100k": _Layout("ml-100k", ("u.data", "u.item", "u.user"), _read_100k),
    "1m": _Layout("ml-1m", ("ratings.dat", "movies.dat", "users.dat"), _read_1m),
    "20m": _Layout("ml-20m", _CSV_FILES, _read_csv_layout),
    "25m": _Layout("ml-25m", _CSV_FILES, _read_csv_layout),
    "latest-small": _Layout("ml-latest-small", _CSV_FILES, _read_csv_layout),
    "latest": _Layout("ml-latest", _CSV_FILES, _read_csv_layout, in_tfds=False),
}
