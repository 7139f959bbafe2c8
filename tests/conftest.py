"""Shared test set-up: a clean prisyn environment, and Parquet loaded up front."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pytest

from pytest_prisyn.config import Settings
from pytest_prisyn.engine import Engine
from pytest_prisyn.profiles import ProfileRegistry

CLEARED_VARIABLES = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "PRISYN_BACKEND",
    "PRISYN_MODEL",
    "PRISYN_CACHE_DIR",
    "GOOGLE_GEMINI_BASE_URL",
    "PRISYN_OFFLINE",
    # Our own CI sets CI=true, which turns offline mode on by default; tests
    # that want it set it themselves.
    "CI",
)


def _load_parquet_machinery() -> None:
    """Round-trip a tiny frame so pandas and pyarrow load all their modules now.

    In-process pytester runs forget modules first imported during the inner run,
    and numpy and pyarrow cannot be loaded twice in one process.
    """
    frame = pd.DataFrame(
        {
            "n": [1],
            "when": pd.to_datetime([0], utc=True),
            "kind": pd.Categorical(["a"]),
        }
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", compression="zstd")
    pd.read_parquet(io.BytesIO(buffer.getvalue()), engine="pyarrow")


_load_parquet_machinery()


@pytest.fixture(autouse=True)
def clean_prisyn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop keys and prisyn settings the outer environment may carry."""
    for name in CLEARED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A simulator-only engine with its own cache, shared by one test module."""
    cache = tmp_path_factory.mktemp("prisyn-cache")
    made = Engine(Settings(backend="simulate", cache_dir=cache), ProfileRegistry({}))
    yield made
    made.close()
