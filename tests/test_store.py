"""The cache store: round trips, damage, pickles refused, nothing half-written."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import diskcache
import pandas as pd
import pytest

from pytest_prisyn.errors import StoreError
from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.simulate import Simulator
from pytest_prisyn.store import DATASET_PREFIX, Entry, Store, decode, encode


@pytest.fixture(scope="module")
def entry() -> Entry:
    sim = Simulator(
        population=[("tech", 1.0)],
        specs={"tech": BUILTIN["tech"].spec},
        n_users=20,
        n_items=40,
        n_interactions=200,
        seed=1,
    )
    return Entry(sim.frame(), sim.catalog(), {"backend": "simulate", "rows": 200})


def test_round_trip_keeps_values_and_dtypes(tmp_path: Path, entry: Entry) -> None:
    store = Store(tmp_path)
    store.put("abc", entry)
    again = Store(tmp_path).get("abc")

    assert again is not None
    pd.testing.assert_frame_equal(again.frame, entry.frame)
    pd.testing.assert_frame_equal(again.catalog, entry.catalog)
    assert again.metadata == {"backend": "simulate", "rows": 200}


def test_miss_is_none(tmp_path: Path) -> None:
    assert Store(tmp_path).get("nothing") is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw[:-10] + b"0123456789",
        lambda raw: b"NOTPRISYN" + raw[9:],
        lambda raw: raw + b"trailing",
        lambda raw: raw[:7] + (10**6).to_bytes(8, "big") + raw[15:],
    ],
    ids=["truncated", "bad-checksum", "bad-magic", "trailing", "bad-header-length"],
)
def test_damaged_entry_is_discarded(tmp_path: Path, entry: Entry, damage) -> None:
    with diskcache.Cache(str(tmp_path)) as cache:
        cache.set(DATASET_PREFIX + "abc", damage(encode(entry)))
    store = Store(tmp_path)

    assert store.get("abc") is None
    assert store.damaged == ["abc"]
    assert not store.contains("abc")


def test_decode_names_the_problem(entry: Entry) -> None:
    with pytest.raises(StoreError, match="checksum"):
        decode(encode(entry)[:-5] + b"xxxxx")


class Boom:
    def __reduce__(self) -> tuple[object, ...]:  # the classic pickle payload shape
        return (Path.touch, (Path(BOOM_FILE),))


BOOM_FILE = ""


def test_pickled_value_is_refused_without_running_it(tmp_path: Path) -> None:
    global BOOM_FILE
    BOOM_FILE = str(tmp_path / "pwned")
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        cache.set(DATASET_PREFIX + "abc", Boom())  # stored with pickle mode

    with pytest.raises(StoreError, match="unpickle"):
        Store(tmp_path / "cache").get("abc")
    assert not Path(BOOM_FILE).exists()


def test_pickled_bytes_planted_as_raw_value_are_just_damage(tmp_path: Path) -> None:
    payload = pickle.dumps(Boom())
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        cache.set(DATASET_PREFIX + "abc", payload)

    assert Store(tmp_path / "cache").get("abc") is None


def test_unreadable_database_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "cache.db").write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(StoreError, match="prisyn cache"):
        Store(tmp_path).get("abc")


def test_json_documents_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_json("k", {"spec": {"a": 1}})

    assert Store(tmp_path).get_json("k") == {"spec": {"a": 1}}


def test_written_entry_is_one_row(tmp_path: Path, entry: Entry) -> None:
    store = Store(tmp_path)
    store.put("abc", entry)
    store.close()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        rows = db.execute("select key from Cache").fetchall()

    assert rows == [(DATASET_PREFIX + "abc",)]
