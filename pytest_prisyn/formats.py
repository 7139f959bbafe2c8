"""Hand a prisyn dataset to the recommender libraries people use, in their format.

File writers (MovieLens, ``u.data``, RecBole atomic files) need nothing beyond
pandas. Adapters that build another library's object import it when called;
when it is missing they raise `MissingDependencyError` naming the extra to
install. Imported lazily: the module loads numpy and pandas.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pytest_prisyn.errors import PrisynError, RequestError

IntArray = npt.NDArray[np.int64]

# Which extra of pytest-prisyn brings each optional library.
EXTRAS = {"surprise": "surprise", "scipy": "scipy", "datasets": "hf"}
MOVIELENS_COLUMNS = ("userId", "movieId", "rating", "timestamp")
RECOMMENDERS_COLUMNS = ("userID", "itemID", "rating", "timestamp")
RECBOLE_INTER_HEADER = (
    "user_id:token",
    "item_id:token",
    "rating:float",
    "timestamp:float",
)
RECBOLE_ITEM_HEADER = ("item_id:token", "name:token_seq", "category:token")
CSR_VALUES = ("rating", "ones")
# Characters that would break a tab-separated atomic file or its reader's quoting.
_UNSAFE_TEXT = re.compile(r"[\t\r\n\"]")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class MissingDependencyError(PrisynError, ImportError):
    """An optional library an adapter needs is not installed."""


def to_movielens_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a MovieLens ``ratings.csv``: userId,movieId,rating,timestamp (unix s)."""
    table = pd.DataFrame(
        {
            "userId": frame["user_id"].to_numpy(dtype=np.int64),
            "movieId": frame["item_id"].to_numpy(dtype=np.int64),
            "rating": frame["rating"].to_numpy(dtype=np.float64),
            "timestamp": unix_seconds(frame["timestamp"]),
        }
    )
    target = Path(path)
    table.to_csv(target, index=False, lineterminator="\n")
    return target


def to_udata(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write MovieLens 100K ``u.data``: user, item, rating, unix s; tabs, no header.

    Whole-star ratings are written as integers, as in the original file.
    """
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    whole = bool(np.all(ratings == np.round(ratings)))
    table = pd.DataFrame(
        {
            "user": frame["user_id"].to_numpy(dtype=np.int64),
            "item": frame["item_id"].to_numpy(dtype=np.int64),
            "rating": ratings.astype(np.int64) if whole else ratings,
            "timestamp": unix_seconds(frame["timestamp"]),
        }
    )
    target = Path(path)
    table.to_csv(target, sep="\t", header=False, index=False, lineterminator="\n")
    return target


def to_recommenders(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with Microsoft Recommenders' column names; timestamp in unix s."""
    return pd.DataFrame(
        {
            "userID": frame["user_id"].to_numpy(dtype=np.int64),
            "itemID": frame["item_id"].to_numpy(dtype=np.int64),
            "rating": frame["rating"].to_numpy(dtype=np.float64),
            "timestamp": unix_seconds(frame["timestamp"]),
        }
    )


def to_recbole(
    frame: pd.DataFrame,
    catalog: pd.DataFrame | None,
    directory: str | Path,
    name: str = "prisyn",
) -> list[Path]:
    """Write RecBole atomic files ``<directory>/<name>/<name>.inter`` and ``.item``.

    That is RecBole's layout for ``data_path=<directory>``, ``dataset=<name>``.
    Fields are tab-separated under a ``field:type`` header; item names become
    a ``token_seq`` (words split on spaces). Tabs, line breaks and double
    quotes in text are replaced by spaces. No ``.item`` file without a catalog.
    """
    folder = Path(directory) / _check_file_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    inter = folder / f"{name}.inter"
    _write_atomic(
        inter,
        RECBOLE_INTER_HEADER,
        zip(
            frame["user_id"].to_numpy(dtype=np.int64).tolist(),
            frame["item_id"].to_numpy(dtype=np.int64).tolist(),
            frame["rating"].to_numpy(dtype=np.float64).tolist(),
            unix_seconds(frame["timestamp"]).tolist(),
            strict=True,
        ),
    )
    if catalog is None:
        return [inter]
    item = folder / f"{name}.item"
    _write_atomic(
        item,
        RECBOLE_ITEM_HEADER,
        zip(
            catalog["item_id"].to_numpy(dtype=np.int64).tolist(),
            (_clean_text(value) for value in catalog["name"].astype("object")),
            (_clean_text(value) for value in catalog["category"].astype("object")),
            strict=True,
        ),
    )
    return [inter, item]


def to_surprise(frame: pd.DataFrame, rating_scale: tuple[float, float] = (1, 5)) -> Any:
    """A ``surprise.Dataset`` of (user, item, rating) with the given rating scale."""
    low, high = _check_scale(rating_scale, frame["rating"])
    surprise = _require("surprise", "to_surprise")
    columns = frame[["user_id", "item_id", "rating"]].reset_index(drop=True)
    reader = surprise.Reader(rating_scale=(low, high))
    return surprise.Dataset.load_from_df(columns, reader)


def to_csr(
    frame: pd.DataFrame, *, values: str = "rating"
) -> tuple[Any, IntArray, IntArray]:
    """A users x items ``scipy.sparse.csr_matrix`` (float32) and its id maps.

    Row i is user ``user_ids[i]``, column j item ``item_ids[j]`` (both ascending,
    only ids that occur). Cells hold the rating, or 1.0 with
    ``values="ones"``; this is what implicit's ``fit`` takes.
    """
    if values not in CSR_VALUES:
        raise RequestError(
            f"values={values!r} is not a cell value; accepted: {', '.join(CSR_VALUES)}"
        )
    _require("scipy", "to_csr")
    sparse = importlib.import_module("scipy.sparse")
    user_ids, rows = np.unique(
        frame["user_id"].to_numpy(dtype=np.int64), return_inverse=True
    )
    item_ids, columns = np.unique(
        frame["item_id"].to_numpy(dtype=np.int64), return_inverse=True
    )
    cells = (
        frame["rating"].to_numpy(dtype=np.float32)
        if values == "rating"
        else np.ones(len(frame), dtype=np.float32)
    )
    matrix = sparse.csr_matrix(
        (cells, (rows, columns)), shape=(len(user_ids), len(item_ids)), dtype=np.float32
    )
    return matrix, user_ids, item_ids


def to_hf_dataset(frame: pd.DataFrame) -> Any:
    """A Hugging Face ``datasets.Dataset`` of the frame, for Flower's partitioners.

    Categorical columns become plain strings, so ``partition_by="category"`` or
    ``"user_id"`` work as label or id columns; the timestamp stays a UTC timestamp.
    """
    datasets = _require("datasets", "to_hf_dataset")
    table = frame.reset_index(drop=True).copy()
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype("object").astype(str)
    return datasets.Dataset.from_pandas(table, preserve_index=False)


def export(
    frame: pd.DataFrame,
    catalog: pd.DataFrame | None,
    file_format: str,
    directory: str | Path,
    name: str = "prisyn",
) -> list[Path]:
    """Write a dataset in one of `FILE_FORMATS` into ``directory``; the files written.

    movielens: ``ratings.csv``; udata: ``u.data``; recommenders:
    ``<name>.csv`` with Recommenders' columns; recbole: `to_recbole`'s files.
    """
    if file_format not in FILE_FORMATS:
        raise RequestError(
            f"format {file_format!r} is not a file format; accepted: "
            f"{', '.join(FILE_FORMATS)}"
        )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return FILE_FORMATS[file_format](frame, catalog, folder, _check_file_name(name))


def unix_seconds(column: pd.Series[Any]) -> IntArray:
    """Whole unix seconds (floored) of a datetime column, with or without a zone."""
    if pd.api.types.is_numeric_dtype(column.dtype):
        return np.asarray(column.to_numpy(), dtype=np.int64)
    instants = column.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return np.asarray(instants // 1_000_000_000, dtype=np.int64)


def _write_atomic(
    path: Path, header: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write("\t".join(header) + "\n")
        for row in rows:
            handle.write("\t".join(str(value) for value in row) + "\n")


def _clean_text(value: object) -> str:
    return " ".join(_UNSAFE_TEXT.sub(" ", str(value)).split())


def _check_file_name(name: str) -> str:
    if not _FILE_NAME.match(name):
        raise RequestError(
            f"dataset name {name!r} must be a plain file name: letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


def _check_scale(scale: object, ratings: pd.Series[Any]) -> tuple[float, float]:
    bounds = list(scale) if isinstance(scale, tuple | list) else []
    if len(bounds) != 2 or not all(
        isinstance(bound, int | float) and not isinstance(bound, bool)
        for bound in bounds
    ):
        raise RequestError(
            f"rating_scale must be a pair (lowest, highest), got {scale!r}"
        )
    low, high = float(bounds[0]), float(bounds[1])
    if not low < high:
        raise RequestError(f"rating_scale={scale!r} must have lowest < highest")
    outside = ratings[(ratings < low) | (ratings > high)]
    if len(outside):
        raise RequestError(
            f"{len(outside)} ratings (e.g. {float(outside.iloc[0])}) fall outside "
            f"rating_scale=({low:g}, {high:g}); pass the dataset's scale, e.g. "
            f"rating_scale=({float(ratings.min()):g}, {float(ratings.max()):g})"
        )
    return low, high


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional library, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRAS[module]
        raise MissingDependencyError(
            f"{purpose} needs the optional library {module!r}, which is not "
            f'installed; install it with: pip install "pytest-prisyn[{extra}]"'
        ) from error


def _export_movielens(
    frame: pd.DataFrame, catalog: pd.DataFrame | None, folder: Path, name: str
) -> list[Path]:
    return [to_movielens_csv(frame, folder / "ratings.csv")]


def _export_udata(
    frame: pd.DataFrame, catalog: pd.DataFrame | None, folder: Path, name: str
) -> list[Path]:
    return [to_udata(frame, folder / "u.data")]


def _export_recommenders(
    frame: pd.DataFrame, catalog: pd.DataFrame | None, folder: Path, name: str
) -> list[Path]:
    target = folder / f"{name}.csv"
    to_recommenders(frame).to_csv(target, index=False, lineterminator="\n")
    return [target]


FILE_FORMATS: dict[
    str, Callable[[pd.DataFrame, pd.DataFrame | None, Path, str], list[Path]]
] = {
    "movielens": _export_movielens,
    "udata": _export_udata,
    "recommenders": _export_recommenders,
    "recbole": to_recbole,
}
