"""tfrs_kit.datasets.movielens: GroupLens file readers, the tfds path and their agreement.

The readers are checked on tiny files written here, in every layout, against the parsers
of tensorflow-datasets itself, so both sources give the same values, not only the same
names. MovieLens itself is never copied into the repository: the one test on the real
data reads ``../shared/data/ml-100k`` beside the repository and skips without it.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrs_kit.datasets import MOVIELENS_GENRES, MOVIELENS_OCCUPATIONS, movielens

REAL_100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k"

FILES_100K = {
    "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|student|T8H1N\n"
    "4|50|F|healthcare|01002\n",
    "u.item": "1|Toy Story (1995)|01-Jan-1995|||0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|Café au lait (1994)|01-Jan-1994|||0|0|0|0|0|1|0|0|1|0|0|0|0|0|1|0|0|0|0\n"
    "3|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    '4|"Quoted" (1990)|01-Jan-1990|||0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n',
    "u.data": "1\t1\t5\t874965758\n2\t2\t3\t876893171\n1\t3\t4\t878542960\n"
    "3\t1\t1\t885000000\n4\t2\t2\t884000000\n3\t4\t5\t885000001\n",
}
FILES_1M = {
    "movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Jumanji: The Game (1995)::Adventure|Children's|Fantasy\n3::Café (2000)::Drama\n",
    "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::4::55117\n",
    "ratings.dat": "1::1::5::978300760\n2::2::3::978302109\n3::3::4::978301968\n"
    "1::3::2::978300275\n",
}
FILES_CSV = {
    "movies.csv": "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '2,"American President, The (1995)",Comedy|Drama|Romance\n'
    "3,Avatar (2009),Action|Adventure|Sci-Fi|IMAX\n"
    "4,Amélie (2018),(no genres listed)\n",
    "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
    "2,2,0.5,1445714835\n3,4,3.0,1493850000\n",
}
ENCODING = {"ml-100k": "latin-1", "ml-1m": "latin-1", "ml-latest-small": "utf-8"}

RATING_DTYPES_100K = {
    "user_id": "str",
    "movie_id": "str",
    "timestamp": "int64",
    "user_rating": "float32",
    "movie_title": "str",
    "movie_genres": "object",
    "user_gender": "bool",
    "bucketized_user_age": "float32",
    "raw_user_age": "float32",
    "user_occupation_label": "int64",
    "user_occupation_text": "str",
    "user_zip_code": "str",
}


def _write(root: Path, folder: str, files: dict[str, str]) -> Path:
    directory = root / folder
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_bytes(text.encode(ENCODING[folder]))
    return directory


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def _rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values, for comparison with tfds's parsers."""
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            {
                k: (
                    v.tolist()
                    if isinstance(v, np.ndarray)
                    else v.item()
                    if isinstance(v, np.generic)
                    else v
                )
                for k, v in record.items()
            }
        )
    return rows


def _tfds_rows(examples, columns) -> list[dict]:
    """tfds's parser output encoded as its ClassLabel features would be."""
    rows = []
    for _, example in examples:
        row = dict(example)
        row["movie_genres"] = [MOVIELENS_GENRES.index(g) for g in row["movie_genres"]]
        row["user_rating"] = float(row["user_rating"])
        row["timestamp"] = int(row["timestamp"])
        if "user_occupation_label" in row:
            row["user_occupation_label"] = MOVIELENS_OCCUPATIONS.index(row["user_occupation_label"])
            row["bucketized_user_age"] = float(row["bucketized_user_age"])
        if "raw_user_age" in row:
            row["raw_user_age"] = float(row["raw_user_age"])
        rows.append({c: row[c] for c in columns})
    return rows


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    return _write(tmp_path, "ml-100k", FILES_100K)


def test_100k_files_read_with_known_values(ml100k):
    data = movielens("100k", data_dir=ml100k)
    assert (data.num_interactions, data.num_users, data.num_items) == (6, 4, 4)
    assert (data.user_id, data.item_id, data.timestamp) == ("user_id", "movie_id", "timestamp")
    assert data.name == "movielens-100k"
    assert data.item_features == ("movie_title", "movie_genres")
    assert data.user_features == (
        "user_gender",
        "bucketized_user_age",
        "raw_user_age",
        "user_occupation_label",
        "user_occupation_text",
        "user_zip_code",
    )
    assert _dtypes(data.interactions) == RATING_DTYPES_100K
    assert _dtypes(data.items) == {c: RATING_DTYPES_100K[c] for c in data.item_columns}
    assert _dtypes(data.users) == {c: RATING_DTYPES_100K[c] for c in data.user_columns}
    first = _rows(data.interactions)[0]
    assert first == {
        "user_id": "1",
        "movie_id": "1",
        "timestamp": 874965758,
        "user_rating": 5.0,
        "movie_title": "Toy Story (1995)",
        "movie_genres": [2, 3, 4],
        "user_gender": True,
        "bucketized_user_age": 18.0,
        "raw_user_age": 24.0,
        "user_occupation_label": MOVIELENS_OCCUPATIONS.index("technician/engineer"),
        "user_occupation_text": "technician",
        "user_zip_code": "85711",
    }
    items = _rows(data.items)
    assert items[1]["movie_title"] == "Café au lait (1994)"  # latin-1 decoded
    assert items[1]["movie_genres"] == [4, 7, 14]  # Comedy, Drama, Romance
    assert items[2]["movie_genres"] == [MOVIELENS_GENRES.index("Unknown")]
    assert items[3] == {"movie_id": "4", "movie_title": '"Quoted" (1990)', "movie_genres": []}
    users = data.users.set_index("user_id")
    assert users.loc["3", "bucketized_user_age"] == 1.0  # under 18
    assert users.loc["4", "user_zip_code"] == "01002"  # leading zero kept
    genres = data.interactions["movie_genres"].iloc[0]
    assert genres.dtype == np.int64 and not genres.flags.writeable


@pytest.mark.parametrize(
    ("variant", "folder", "files", "parser"),
    [
        ("100k", "ml-100k", FILES_100K, "parse_100k_ratings_data"),
        ("1m", "ml-1m", FILES_1M, "parse_1m_ratings_data"),
        ("latest-small", "ml-latest-small", FILES_CSV, "parse_current_ratings_data"),
    ],
)
def test_files_read_exactly_what_tfds_parses(tmp_path, variant, folder, files, parser):
    parsing = pytest.importorskip("tensorflow_datasets.structured.movielens_parsing")
    directory = _write(tmp_path, folder, files)
    ours = movielens(variant, data_dir=directory).interactions
    expected = _tfds_rows(getattr(parsing, parser)(str(directory)), list(ours.columns))
    assert _rows(ours) == expected


def test_1m_maps_occupations_and_genres_as_tfds_does(tmp_path):
    data = movielens("1m", data_dir=_write(tmp_path, "ml-1m", FILES_1M))
    users = data.users.set_index("user_id")
    assert users.loc["1", "user_occupation_text"] == "K-12 student"
    assert users.loc["3", "user_occupation_text"] == "college/grad student"
    student = MOVIELENS_OCCUPATIONS.index("student")
    assert users.loc["1", "user_occupation_label"] == users.loc["3", "user_occupation_label"]
    assert users.loc["1", "user_occupation_label"] == student
    assert "raw_user_age" not in data.interactions
    assert data.items["movie_genres"].iloc[0].tolist() == [2, 3, 4]  # "Children's" merged
    assert data.items["movie_title"].iloc[1] == "Jumanji: The Game (1995)"


def test_csv_layout_has_no_user_features(tmp_path):
    data = movielens("20m", data_dir=_write(tmp_path, "ml-latest-small", FILES_CSV))
    assert data.user_features == ()
    assert list(data.users.columns) == ["user_id"]
    assert list(data.users["user_id"]) == ["1", "2", "3"]
    assert list(data.interactions.columns) == [
        "user_id",
        "movie_id",
        "timestamp",
        "user_rating",
        "movie_title",
        "movie_genres",
    ]
    items = data.items.set_index("movie_id")
    assert items.loc["2", "movie_title"] == "American President, The (1995)"
    assert items.loc["3", "movie_genres"].tolist() == [0, 1, 15, 11]  # file order, IMAX=11
    assert items.loc["4", "movie_genres"].tolist() == [20]  # "(no genres listed)"
    assert items.loc["4", "movie_title"] == "Amélie (2018)"  # utf-8
    assert data.interactions["user_rating"].tolist() == [4.0, 4.5, 0.5, 3.0]


@pytest.mark.parametrize("inside", ["ml-100k/", ""])
def test_zip_and_parent_folder_read_like_the_folder(ml100k, tmp_path, inside):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        if inside:
            zipped.writestr(inside, "")
        for name in FILES_100K:
            zipped.write(ml100k / name, inside + name)
    expected = movielens("100k", data_dir=ml100k)
    for data_dir in (archive, str(archive), tmp_path):
        data = movielens("ml-100k", data_dir=data_dir)
        assert _rows(data.interactions) == _rows(expected.interactions)
        assert _rows(data.users) == _rows(expected.users)


def test_missing_files_are_listed(tmp_path):
    (tmp_path / "u.data").write_text("1\t1\t5\t1\n")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError) as raised:
        movielens("100k", data_dir=tmp_path)
    message = str(raised.value)
    assert "u.data, u.item, u.user" in message and "'ml-100k'" in message
    assert "contains: notes.txt, u.data." in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        movielens("1m", data_dir=tmp_path / "nowhere")
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ml-1m/README", "")
    with pytest.raises(FileNotFoundError, match=r"ratings.dat, movies.dat, users.dat.*ml-1m/"):
        movielens("1m", data_dir=archive)


def test_unknown_names_and_bad_combinations():
    with pytest.raises(ValueError, match=r"`variant` must be a known MovieLens variant.*'100k'\?"):
        movielens("100K")
    with pytest.raises(ValueError, match=r"`source` must be a known source"):
        movielens("100k", source="web")
    with pytest.raises(ValueError, match=r'`data_dir` must be given when source="files"'):
        movielens("100k", source="files")
    with pytest.raises(ValueError, match=r"`variant` must be one that tensorflow-datasets"):
        movielens("latest")


def test_unknown_occupation_is_reported(tmp_path):
    files = dict(FILES_100K, **{"u.user": "1|24|M|astronaut|85711\n"})
    with pytest.raises(ValueError, match="astronaut"):
        movielens("100k", data_dir=_write(tmp_path, "ml-100k", files))


def test_missing_tensorflow_datasets_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install "tfrs-kit\[datasets\]"'):
        movielens("100k")


@pytest.fixture(scope="module")
def mocked_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        yield {variant: movielens(variant, source="tfds") for variant in ("100k", "25m")}


def test_tfds_path_matches_the_file_readers_names_and_dtypes(mocked_tfds, ml100k):
    from_tfds = mocked_tfds["100k"]
    from_files = movielens("100k", data_dir=ml100k)
    assert from_tfds.num_interactions == 6
    assert from_tfds.name == from_files.name
    assert from_tfds.user_features == from_files.user_features
    assert from_tfds.item_features == from_files.item_features
    for field in ("interactions", "items", "users"):
        assert _dtypes(getattr(from_tfds, field)) == _dtypes(getattr(from_files, field))
    genres = from_tfds.interactions["movie_genres"]
    assert all(isinstance(g, np.ndarray) and g.dtype == np.int64 and g.ndim == 1 for g in genres)
    assert all(isinstance(v, str) for v in from_tfds.interactions["movie_title"])


def test_tfds_path_without_demographics(mocked_tfds):
    data = mocked_tfds["25m"]
    assert data.user_features == ()
    assert list(data.interactions.columns) == [
        "user_id",
        "movie_id",
        "timestamp",
        "user_rating",
        "movie_title",
        "movie_genres",
    ]
    assert list(data.items.columns) == ["movie_id", "movie_title", "movie_genres"]


def test_real_movielens_100k(mocked_tfds):
    if not (REAL_100K / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found at {REAL_100K}")
    data = movielens("100k", data_dir=REAL_100K)
    assert (data.num_interactions, data.num_users, data.num_items) == (100_000, 943, 1_682)
    assert data.interactions["user_id"].nunique() == 943
    assert data.interactions["movie_id"].nunique() == 1_682
    for field in ("interactions", "items", "users"):
        assert _dtypes(getattr(data, field)) == _dtypes(getattr(mocked_tfds["100k"], field))
    first = data.interactions.iloc[0]
    assert (first["user_id"], first["movie_id"], first["user_rating"]) == ("196", "242", 3.0)
    assert first["movie_title"] == "Kolya (1996)"
    assert first["movie_genres"].tolist() == [MOVIELENS_GENRES.index("Comedy")]
    assert data.interactions["user_rating"].mean() == pytest.approx(3.52986, abs=1e-5)


# --- malformed GroupLens files: errors name the file and the line ---------------------


@pytest.mark.parametrize("folder, files, name, broken, line", [
    ("ml-100k", FILES_100K, "u.data", "1\t1\t5\t874965758\n2\t2\n", 2),           # short line
    ("ml-100k", FILES_100K, "u.data", "1\t1\t5\t874965758\n2\tx\t3\t87\n", 2),    # not a number
    ("ml-1m", FILES_1M, "ratings.dat", "1::1::5::978300760\n2::2::3\n", 2),
    ("ml-latest-small", FILES_CSV, "ratings.csv",
     "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,four,964981247\n", 3),
])
def test_a_malformed_line_is_named(tmp_path, folder, files, name, broken, line):
    variant = folder.removeprefix("ml-")
    root = _write(tmp_path, folder, {**files, name: broken})
    with pytest.raises(ValueError, match=rf"MovieLens file .*{folder}/{name}, line {line}, must "
                                         "hold a number"):
        movielens(variant, data_dir=root)


def test_too_many_fields_name_the_file_and_line(tmp_path):
    root = _write(tmp_path, "ml-100k", {**FILES_100K, "u.data": "1\t1\t5\t8\n2\t2\t3\t8\t9\n"})
    with pytest.raises(ValueError, match=r"ml-100k/u.data is malformed: .*line 2"):
        movielens("100k", data_dir=root)


def test_bad_encoding_names_the_file_and_line(tmp_path):
    root = _write(tmp_path, "ml-latest-small", FILES_CSV)
    movies = (root / "movies.csv").read_bytes()
    (root / "movies.csv").write_bytes(movies.replace("Amélie".encode(), b"Am\xe9lie"))  # latin-1
    with pytest.raises(ValueError, match=r"movies.csv, line 5, must be utf-8 text"):
        movielens("latest-small", data_dir=root)


@pytest.mark.parametrize("folder, files, name, extra, line", [
    ("ml-100k", FILES_100K, "u.item",
     "1|Toy Story again (1995)|01-Jan-1995|||0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n", 5),
    ("ml-1m", FILES_1M, "movies.dat", "2::Jumanji (1995)::Adventure\n", 4),
    ("ml-latest-small", FILES_CSV, "movies.csv", "3,Avatar (2009),Action\n", 6),
])
def test_a_duplicate_movie_id_is_named(tmp_path, folder, files, name, extra, line):
    root = _write(tmp_path, folder, {**files, name: files[name] + extra})
    with pytest.raises(ValueError, match=rf"{name}, line {line}, repeats the movie id"):
        movielens(folder.removeprefix("ml-"), data_dir=root)


def test_a_truncated_zip_says_so(ml100k, tmp_path):
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name in FILES_100K:
            zipped.write(ml100k / name, "ml-100k/" + name)
    whole = archive.read_bytes()
    (tmp_path / "cut.zip").write_bytes(whole[: len(whole) // 2])  # no central directory
    with pytest.raises(ValueError, match=r"cut.zip.*not a valid zip archive \(a truncated"):
        movielens("100k", data_dir=tmp_path / "cut.zip")
    # A member whose bytes are damaged (the directory at the end intact): its name is given.
    offset = whole.index(b"u.data") + len("u.data") + 2
    damaged = whole[:offset] + bytes(b ^ 0xFF for b in whole[offset:offset + 20]) + whole[
        offset + 20:]
    (tmp_path / "damaged.zip").write_bytes(damaged)
    with pytest.raises(ValueError, match=r"damaged.zip:ml-100k/u.data cannot be read.*download "
                                         "it again"):
        movielens("100k", data_dir=tmp_path / "damaged.zip")
