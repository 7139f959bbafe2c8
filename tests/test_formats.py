"""Adapters to other libraries' formats, checked against the libraries themselves.

RecBole (it needs PyTorch) and Microsoft Recommenders (it pins older pandas)
are checked against their documented formats instead.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from pytest_prisyn import formats
from pytest_prisyn.engine import Engine
from pytest_prisyn.errors import PrisynError, RequestError
from pytest_prisyn.formats import MissingDependencyError

SIZES = {"n_users": 40, "n_items": 120, "n_interactions": 800}
RECBOLE_TYPES = {"token", "token_seq", "float", "float_seq"}


def optional(name: str) -> ModuleType:
    """An optional library these tests check against (installed in CI)."""
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def frame(engine: Engine) -> pd.DataFrame:
    return engine.dataset("tech", **SIZES)


@pytest.fixture(scope="module")
def catalog(engine: Engine) -> pd.DataFrame:
    return engine.catalog("tech", **SIZES)


def seconds(frame: pd.DataFrame) -> list[int]:
    return [int(t.timestamp()) for t in frame["timestamp"]]


# -- MovieLens -----------------------------------------------------------------------


def test_movielens_csv_has_the_ratings_csv_layout(frame, tmp_path):
    path = formats.to_movielens_csv(frame, tmp_path / "ratings.csv")

    lines = path.read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    assert len(lines) == len(frame) + 1
    first = frame.iloc[0]
    assert lines[1] == (
        f"{first.user_id},{first.item_id},{first.rating},"
        f"{int(first.timestamp.timestamp())}"
    )
    back = pd.read_csv(path)
    assert back["userId"].tolist() == frame["user_id"].tolist()
    assert back["movieId"].tolist() == frame["item_id"].tolist()
    assert back["rating"].tolist() == frame["rating"].tolist()
    assert back["timestamp"].tolist() == seconds(frame)
    assert back["timestamp"].dtype == np.int64


def test_udata_is_tab_separated_without_header(frame, tmp_path):
    path = formats.to_udata(frame, tmp_path / "u.data")

    lines = path.read_text().splitlines()
    first = frame.iloc[0]
    assert lines[0] == (
        f"{first.user_id}\t{first.item_id}\t{int(first.rating)}\t"
        f"{int(first.timestamp.timestamp())}"
    )
    back = pd.read_csv(
        path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"]
    )
    assert len(back) == len(frame)
    assert back["rating"].dtype == np.int64
    assert back["timestamp"].tolist() == seconds(frame)


def test_udata_keeps_half_stars(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [3, 4],
            "rating": [3.5, 4.0],
            "timestamp": pd.to_datetime([874965758, 876893171], unit="s", utc=True),
        }
    )

    path = formats.to_udata(frame, tmp_path / "u.data")

    assert path.read_text() == "1\t3\t3.5\t874965758\n2\t4\t4.0\t876893171\n"


def test_unix_seconds_floor_and_ignore_the_zone():
    stamps = pd.Series(
        pd.to_datetime(["1970-01-01 00:00:01.9", "1969-12-31 23:59:59.5"], utc=True)
    )

    assert formats.unix_seconds(stamps).tolist() == [1, -1]
    local = stamps.dt.tz_convert("Europe/Berlin")
    assert formats.unix_seconds(local).tolist() == [1, -1]


# -- Microsoft Recommenders ----------------------------------------------------------


def test_recommenders_columns(frame):
    table = formats.to_recommenders(frame)

    assert list(table.columns) == ["userID", "itemID", "rating", "timestamp"]
    assert table["userID"].tolist() == frame["user_id"].tolist()
    assert table["itemID"].tolist() == frame["item_id"].tolist()
    assert table["rating"].dtype == np.float64
    assert table["timestamp"].tolist() == seconds(frame)


# -- RecBole -------------------------------------------------------------------------


def read_atomic(path: Path) -> tuple[dict[str, str], pd.DataFrame]:
    """Read an atomic file the way RecBole's loader does: header types, then rows."""
    header = path.read_text(encoding="utf-8").splitlines()[0]
    types = dict(field.split(":") for field in header.split("\t"))
    table = pd.read_csv(path, delimiter="\t")
    table.columns = list(types)
    return types, table


def test_recbole_atomic_files_in_recbole_layout(frame, catalog, tmp_path):
    written = formats.to_recbole(frame, catalog, tmp_path, "shop")

    assert written == [
        tmp_path / "shop" / "shop.inter",
        tmp_path / "shop" / "shop.item",
    ]
    types, inter = read_atomic(written[0])
    assert types == {
        "user_id": "token",
        "item_id": "token",
        "rating": "float",
        "timestamp": "float",
    }
    assert inter["user_id"].tolist() == frame["user_id"].tolist()
    assert inter["rating"].tolist() == frame["rating"].tolist()
    assert inter["timestamp"].tolist() == seconds(frame)
    types, items = read_atomic(written[1])
    assert types == {"item_id": "token", "name": "token_seq", "category": "token"}
    assert set(types.values()) <= RECBOLE_TYPES
    assert items["item_id"].tolist() == catalog["item_id"].tolist()
    assert items["name"].tolist() == catalog["name"].tolist()
    assert items["category"].tolist() == catalog["category"].astype(str).tolist()


def test_recbole_text_cannot_break_the_file(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": [1],
            "item_id": [1],
            "rating": [5.0],
            "timestamp": pd.to_datetime([0], unit="s", utc=True),
        }
    )
    catalog = pd.DataFrame(
        {
            "item_id": [1],
            "name": ['"Quoted"\tname\nwith  breaks'],
            "category": ["smart\thome"],
        }
    )

    _, item = formats.to_recbole(frame, catalog, tmp_path, "odd")

    assert item.read_text().splitlines()[1] == "1\tQuoted name with breaks\tsmart home"


def test_recbole_without_catalog_writes_only_interactions(frame, tmp_path):
    written = formats.to_recbole(frame, None, tmp_path)

    assert written == [tmp_path / "prisyn" / "prisyn.inter"]


def test_recbole_refuses_a_name_that_is_a_path(frame, tmp_path):
    with pytest.raises(RequestError, match=r"'../up' must be a plain file name"):
        formats.to_recbole(frame, None, tmp_path, "../up")


# -- Surprise ------------------------------------------------------------------------


def test_surprise_dataset_trains_a_model(frame):
    surprise = optional("surprise")

    data = formats.to_surprise(frame, rating_scale=(1, 5))

    trainset = data.build_full_trainset()
    assert trainset.n_users == frame["user_id"].nunique()
    assert trainset.n_items == frame["item_id"].nunique()
    assert trainset.n_ratings == len(frame)
    assert trainset.rating_scale == (1.0, 5.0)
    first = frame.iloc[0]
    inner_user = trainset.to_inner_uid(first.user_id)
    inner_item = trainset.to_inner_iid(first.item_id)
    assert (inner_item, first.rating) in trainset.ur[inner_user]
    model = surprise.SVD(n_epochs=2, random_state=0).fit(trainset)
    assert 1.0 <= model.predict(first.user_id, first.item_id).est <= 5.0


def test_surprise_refuses_ratings_outside_the_scale(frame):
    with pytest.raises(RequestError, match=r"outside rating_scale=\(1, 4\)"):
        formats.to_surprise(frame, rating_scale=(1, 4))


@pytest.mark.parametrize("scale", [(5, 1), (1,), "1-5", (1, True)])
def test_surprise_refuses_a_malformed_scale(frame, scale):
    with pytest.raises(RequestError, match=r"rating_scale"):
        formats.to_surprise(frame, rating_scale=scale)


# -- scipy / implicit ----------------------------------------------------------------


def test_csr_matrix_holds_every_rating_with_its_ids(frame):
    optional("scipy")

    matrix, user_ids, item_ids = formats.to_csr(frame)

    assert matrix.format == "csr"
    assert matrix.dtype == np.float32
    assert matrix.shape == (frame["user_id"].nunique(), frame["item_id"].nunique())
    assert matrix.nnz == len(frame)
    assert user_ids.tolist() == sorted(frame["user_id"].unique())
    assert item_ids.tolist() == sorted(frame["item_id"].unique())
    for row in frame.head(20).itertuples():
        i = int(np.searchsorted(user_ids, row.user_id))
        j = int(np.searchsorted(item_ids, row.item_id))
        assert matrix[i, j] == row.rating


def test_csr_matrix_of_ones(frame):
    optional("scipy")

    matrix, _, _ = formats.to_csr(frame, values="ones")

    assert set(matrix.data.tolist()) == {1.0}


def test_csr_refuses_an_unknown_cell_value(frame):
    with pytest.raises(RequestError, match=r"accepted: rating, ones"):
        formats.to_csr(frame, values="counts")


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")
def test_implicit_fits_on_the_csr_matrix(frame):
    als = optional("implicit.als")

    matrix, user_ids, item_ids = formats.to_csr(frame, values="ones")
    model = als.AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    model.fit(matrix, show_progress=False)

    assert model.user_factors.shape == (len(user_ids), 4)
    assert model.item_factors.shape == (len(item_ids), 4)
    ids, _ = model.recommend(0, matrix[0], N=5)
    assert not set(ids.tolist()) & set(matrix[0].indices.tolist())


# -- Hugging Face datasets and Flower Datasets ---------------------------------------


def test_hf_dataset_keeps_every_row_and_column(frame):
    optional("datasets")

    dataset = formats.to_hf_dataset(frame)

    assert dataset.num_rows == len(frame)
    assert dataset.column_names == list(frame.columns)
    assert dataset.features["user_id"].dtype == "int64"
    assert dataset.features["category"].dtype in ("string", "large_string")
    assert dataset[0]["category"] == frame["category"].iloc[0]
    assert dataset["item_id"] == frame["item_id"].tolist()


def test_flower_partitioners_accept_the_dataset(frame):
    partitioner = optional("flwr_datasets.partitioner")
    dataset = formats.to_hf_dataset(frame)

    by_user = partitioner.NaturalIdPartitioner(partition_by="user_id")
    by_user.dataset = dataset
    assert by_user.num_partitions == frame["user_id"].nunique()
    iid = partitioner.IidPartitioner(num_partitions=4)
    iid.dataset = dataset
    assert sum(iid.load_partition(k).num_rows for k in range(4)) == len(frame)
    skewed = partitioner.DirichletPartitioner(
        num_partitions=4, partition_by="category", alpha=0.5, seed=42
    )
    skewed.dataset = dataset
    assert sum(skewed.load_partition(k).num_rows for k in range(4)) == len(frame)


# -- missing optional libraries ------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("surprise", lambda f: formats.to_surprise(f), "surprise"),
        ("scipy", lambda f: formats.to_csr(f), "scipy"),
        ("datasets", lambda f: formats.to_hf_dataset(f), "hf"),
    ],
)
def test_a_missing_library_names_its_extra(frame, monkeypatch, module, call, extra):
    monkeypatch.setitem(sys.modules, module, None)

    with pytest.raises(MissingDependencyError) as caught:
        call(frame)

    assert isinstance(caught.value, ImportError)
    assert isinstance(caught.value, PrisynError)
    assert f'pip install "pytest-prisyn[{extra}]"' in str(caught.value)
    assert repr(module) in str(caught.value)


# -- export, for the command line ----------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "names"),
    [
        ("movielens", ["ratings.csv"]),
        ("udata", ["u.data"]),
        ("recommenders", ["shop.csv"]),
        ("recbole", ["shop/shop.inter", "shop/shop.item"]),
    ],
)
def test_export_writes_the_named_files(frame, catalog, tmp_path, file_format, names):
    written = formats.export(frame, catalog, file_format, tmp_path / "out", "shop")

    assert written == [tmp_path / "out" / name for name in names]
    assert all(path.stat().st_size > 0 for path in written)


def test_export_refuses_an_unknown_format(frame, tmp_path):
    with pytest.raises(RequestError) as caught:
        formats.export(frame, None, "parquet", tmp_path)

    assert str(caught.value) == (
        "format 'parquet' is not a file format; accepted: movielens, udata, "
        "recommenders, recbole"
    )
