"""The cache store: round trips, damage, pickles refused, nothing half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import pickle
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache
import pandas as pd
import pytest

from pytest_prisyn.errors import StoreError
from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.simulate import Simulator
from pytest_prisyn.store import (
    DATASET_PREFIX,
    Entry,
    Store,
    _ReadOnly,
    decode,
    encode,
    write_parquet,
)


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


def test_damaged_index_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, entry: Entry
) -> None:
    (tmp_path / "cache.db").write_bytes(b"this is not sqlite" * 100)
    store = Store(tmp_path)

    assert store.get("abc") is None
    store.put("abc", entry)
    assert store.get("abc") is not None
    assert store.quarantined is not None
    assert store.quarantined.read_bytes().startswith(b"this is not sqlite")


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make a directory tree impossible to write to, for this process too.

    Permission bits do not stop root, so as root the tree is made immutable
    with chattr instead (ext4 and most local file systems support it).
    """
    paths = [directory, *directory.rglob("*")]
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        undo = ["chmod", "-R", "u+w", str(directory)]
    else:
        done = subprocess.run(
            ["chattr", "-R", "+i", str(directory)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"cannot make files immutable here: {done.stderr!r}")
        undo = ["chattr", "-R", "-i", str(directory)]
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


def test_read_only_directory_serves_reads_and_refuses_writes(
    tmp_path: Path, entry: Entry
) -> None:
    writer = Store(tmp_path / "cache")
    writer.put("abc", entry)
    writer.put_json("spec", {"a": 1})
    writer.close()

    with unwritable(tmp_path / "cache"):
        store = Store(tmp_path / "cache")
        found = store.get("abc")
        assert store.read_only
        assert found is not None
        pd.testing.assert_frame_equal(found.frame, entry.frame)
        assert store.get_json("spec") == {"a": 1}
        assert store.fingerprints() == ["abc"]
        with pytest.raises(StoreError, match="read-only"):
            store.put_json("other", {})
        store.close()


def test_read_only_reader_refuses_pickles(tmp_path: Path) -> None:
    with diskcache.Cache(str(tmp_path)) as cache:
        cache.set(DATASET_PREFIX + "abc", Boom())

    with pytest.raises(StoreError, match="not raw bytes"):
        _ReadOnly(tmp_path).get(DATASET_PREFIX + "abc")


def _hold_and_generate(directory: str, log: str) -> None:
    store = Store(Path(directory))
    with store.lock("fp"):
        found = store.get_json("made")
        if found is None:
            with open(log, "a") as out:
                out.write("generated\n")
            time.sleep(0.3)
            store.put_json("made", {"by": os.getpid()})
    store.close()


def test_lock_gives_single_flight_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_hold_and_generate, args=(str(tmp_path / "c"), str(log)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert log.read_text() == "generated\n"


def test_lock_wait_is_bounded(tmp_path: Path) -> None:
    holder = Store(tmp_path, lock_timeout=0.2)
    waiter = Store(tmp_path, lock_timeout=0.2)
    # flock locks belong to the open file, so a second handle waits.
    with (
        holder.lock("fp"),
        pytest.raises(StoreError, match="waited 0s"),
        waiter.lock("fp"),
    ):
        pass


def test_json_documents_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put_json("k", {"spec": {"a": 1}})

    assert Store(tmp_path).get_json("k") == {"spec": {"a": 1}}


def test_written_entry_is_the_data_plus_a_metadata_copy(
    tmp_path: Path, entry: Entry
) -> None:
    store = Store(tmp_path)
    store.put("abc", entry)
    store.close()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        rows = db.execute("select key from Cache order by key").fetchall()

    assert rows == [(DATASET_PREFIX + "abc",), ("meta:abc",)]
    assert Store(tmp_path).metadata("abc") == entry.metadata


def test_parquet_parts_still_read(entry: Entry) -> None:
    parts = [write_parquet(entry.frame), write_parquet(entry.catalog)]
    header = {
        "metadata": {"rows": 200},
        "parts": [
            {
                "name": name,
                "size": len(part),
                "sha256": hashlib.sha256(part).hexdigest(),
            }
            for name, part in zip(("interactions", "catalog"), parts, strict=True)
        ],
    }
    head = json.dumps(header).encode()
    raw = b"PRISYN\x01" + len(head).to_bytes(8, "big") + head + b"".join(parts)

    again = decode(raw)

    pd.testing.assert_frame_equal(again.frame, entry.frame)
    pd.testing.assert_frame_equal(again.catalog, entry.catalog)
