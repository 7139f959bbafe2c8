"""The on-disk cache: one diskcache entry per dataset fingerprint, never a pickle.

An entry's value is one byte string laid out as::

    b"PRISYN\\x01"  magic and layout version
    8 bytes         length of the header, big-endian
    header          UTF-8 JSON: metadata, and for each part its size and sha256
    parts           the interactions, then the item catalog, each an Arrow IPC
                    stream (LZ4); parts without an "encoding" are Parquet

Every part's checksum is verified on read; an entry that fails any check is
reported as damaged, deleted, and treated as a miss. diskcache's own pickle
mode is refused outright, so a value planted by someone else cannot run code.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diskcache

from pytest_prisyn.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("pytest_prisyn")

MAGIC = b"PRISYN\x01"
PARTS = ("interactions", "catalog")
# Cache values hold Arrow IPC streams (LZ4): decoded an order of magnitude faster
# than Parquet on one thread. Entries written as Parquet (no "encoding") still read.
ARROW = "arrow-ipc-lz4"
SPEC_PREFIX = "spec:"
DATASET_PREFIX = "dataset:"
LOCK_WAIT_S = 10.0
# A copy of each entry's metadata, small, so listings need not read the data.
META_PREFIX = "meta:"


@dataclass
class Entry:
    """A recorded dataset: interactions, item catalog and what made them."""

    frame: pd.DataFrame
    catalog: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)


class Store:
    """Datasets and Gemini-written specs in a diskcache directory.

    When the directory cannot be written (permissions, a read-only mount) the
    store still serves what is recorded, read straight from the SQLite index;
    writes then fail with `StoreError`, which callers treat as "not cached".
    A database too damaged to open is moved aside and a fresh one started.
    """

    def __init__(self, directory: Path, *, lock_timeout: float = 900.0) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout
        self._backend: _Writable | _ReadOnly | None = None
        self.damaged: list[str] = []
        self.quarantined: Path | None = None
        self._locked: str | None = None

    @property
    def read_only(self) -> bool:
        """Whether writes are impossible (and reads come from the index directly)."""
        return isinstance(self._open(), _ReadOnly)

    def get(self, fingerprint: str) -> Entry | None:
        """The entry for `fingerprint`, or None on a miss or a damaged entry."""
        raw = self._fetch(DATASET_PREFIX + fingerprint)
        if raw is None:
            return None
        try:
            return decode(raw)
        except StoreError as error:
            log.warning("discarding damaged cache entry %s: %s", fingerprint, error)
            self.damaged.append(fingerprint)
            self.delete(fingerprint)
            return None

    def metadata(self, fingerprint: str) -> dict[str, Any] | None:
        """An entry's metadata, read without loading its data; None if absent."""
        copy = self._fetch(META_PREFIX + fingerprint)
        if copy is not None:
            try:
                document = json.loads(copy)
            except ValueError:
                document = None
            if isinstance(document, dict):
                return document
        raw = self._fetch(DATASET_PREFIX + fingerprint)
        if raw is None:
            return None
        try:
            return _split(raw)[0]["metadata"]  # type: ignore[no-any-return]
        except StoreError:
            return {"damaged": True}

    def contains(self, fingerprint: str) -> bool:
        """Whether an entry exists (without reading or checking it)."""
        return self._fetch(DATASET_PREFIX + fingerprint) is not None

    def put(self, fingerprint: str, entry: Entry) -> None:
        """Store a complete, validated entry and its metadata in one transaction."""
        metadata = json.dumps(entry.metadata, sort_keys=True, default=str).encode()
        self._write_all(
            {
                DATASET_PREFIX + fingerprint: encode(entry),
                META_PREFIX + fingerprint: metadata,
            }
        )

    def delete(self, fingerprint: str) -> None:
        """Remove an entry if present (a read-only store keeps it, with a warning)."""
        try:
            self._open().delete(DATASET_PREFIX + fingerprint)
            self._open().delete(META_PREFIX + fingerprint)
        except Exception as error:
            log.warning("cannot delete cache entry %s: %s", fingerprint, error)

    def get_json(self, key: str) -> dict[str, Any] | None:
        """A small JSON document (e.g. a Gemini-written spec), or None."""
        raw = self._fetch(SPEC_PREFIX + key)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return document if isinstance(document, dict) else None

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        """Store a small JSON document."""
        self.put_json_many({key: document})

    def put_json_many(self, documents: Mapping[str, dict[str, Any]]) -> None:
        """Store small JSON documents, all in one transaction."""
        self._write_all(
            {
                SPEC_PREFIX + key: json.dumps(document, sort_keys=True).encode()
                for key, document in documents.items()
            }
        )

    def fingerprints(self) -> list[str]:
        """Fingerprints of every stored dataset."""
        return sorted(
            key.removeprefix(DATASET_PREFIX)
            for key in self._guard("list", self._open().keys)
            if key.startswith(DATASET_PREFIX)
        )

    @contextlib.contextmanager
    def lock(self, fingerprint: str) -> Iterator[None]:
        """Hold the cross-process lock of one fingerprint (single flight).

        An advisory file lock: released by the OS if the holder dies, so a
        crashed worker never blocks the others. Waits at most `lock_timeout`.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            yield
            return
        try:
            locks = self.directory / "locks"
            locks.mkdir(parents=True, exist_ok=True)
            handle = open(locks / f"{fingerprint}.lock", "a+b")  # noqa: SIM115
        except OSError:  # cannot create lock files: a read-only cache, no writes
            yield
            return
        with handle:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"waited {self.lock_timeout:.0f}s for another process "
                            f"generating dataset {fingerprint[:12]}; if none is "
                            f"running, delete {locks / (fingerprint + '.lock')}"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the underlying database."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _fetch(self, key: str) -> bytes | None:
        value = self._guard("read", self._open().get, key)
        if value is None or isinstance(value, bytes):
            return value
        raise StoreError(f"cache entry {key} is not raw bytes")

    def _write_all(self, values: Mapping[str, bytes]) -> None:
        self._guard("write to", self._open().set_all, values)

    def _guard(self, action: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as error:
            hint = ""
            if "locked" in str(error):
                hint = (
                    "; another process holds its database (a hung pytest or "
                    "prisyn command?): let it finish or stop it, then run again"
                )
            raise StoreError(
                f"cannot {action} the prisyn cache at {self.directory}: {error}{hint}"
            ) from None

    def _open(self) -> _Writable | _ReadOnly:
        if self._locked is not None:
            raise StoreError(self._locked)
        if self._backend is None:
            self._backend = self._connect()
            # An SQLite handle still open while the interpreter tears down
            # pyarrow's threads can abort the process ("terminate called
            # without an active exception"); close before that, always.
            atexit.register(self.close)
        return self._backend

    def _connect(self) -> _Writable | _ReadOnly:
        database = self.directory / "cache.db"
        try:
            return _Writable(self.directory)
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                return self._read_only(error)
            # Reading around a writer's lock could see a half-done write; fail
            # now, and fast for every later call of this run.
            self._locked = (
                f"cannot open the prisyn cache at {self.directory}: {error}; another "
                "process holds its database (a hung pytest or prisyn command?): let "
                "it finish or stop it, then run again"
            )
            raise StoreError(self._locked) from None
        except sqlite3.DatabaseError as error:
            if not _unreadable(error) or not database.exists():
                return self._read_only(error)
        except OSError as error:
            return self._read_only(error)
        # The index itself is damaged: keep it for inspection, start afresh.
        self.quarantined = database.with_name(f"cache.db.damaged-{int(time.time())}")
        database.rename(self.quarantined)
        log.warning("the prisyn cache index was damaged; moved to %s", self.quarantined)
        return _Writable(self.directory)

    def _read_only(self, cause: Exception) -> _ReadOnly:
        log.warning(
            "prisyn cache at %s is not writable (%s); serving it read-only",
            self.directory,
            cause,
        )
        try:
            return _ReadOnly(self.directory, cause)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(
                f"cannot open the prisyn cache at {self.directory}: {error}"
            ) from None


class _RawDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache Disk that returns raw bytes and refuses to unpickle anything."""

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise StoreError("refusing to unpickle a cache value")
        return super().fetch(mode, filename, value, read)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise StoreError("refusing to unpickle a cache key")
        return super().get(key, raw)


class _Writable:
    """The normal store: a diskcache Cache with the raw-bytes Disk."""

    def __init__(self, directory: Path) -> None:
        _wait_for_writers(directory / "cache.db", LOCK_WAIT_S)
        self._cache = diskcache.Cache(
            str(directory), disk=_RawDisk, timeout=LOCK_WAIT_S
        )

    def get(self, key: str) -> Any:
        return self._cache.get(key, default=None)

    def set_all(self, values: Mapping[str, bytes]) -> None:
        with self._cache.transact():
            for key, value in values.items():
                self._cache.set(key, value)

    def delete(self, key: str) -> None:
        self._cache.delete(key)

    def keys(self) -> list[str]:
        return [key for key in self._cache.iterkeys() if isinstance(key, str)]

    def close(self) -> None:
        self._cache.close()


class _ReadOnly:
    """Reads diskcache's index with SQLite in read-only mode; writes refuse."""

    def __init__(self, directory: Path, cause: Exception | None = None) -> None:
        self._directory = directory
        self._why = _why_unwritable(directory, cause)
        database = directory / "cache.db"
        if database.exists():
            # immutable=1: no locks and no WAL side files, which a directory
            # we cannot write to could not hold anyway.
            uri = f"{database.resolve().as_uri()}?mode=ro&immutable=1"
            self._db: sqlite3.Connection | None = sqlite3.connect(uri, uri=True)
        else:
            self._db = None

    def get(self, key: str) -> bytes | None:
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1",
            (key,),
        ).fetchone()
        if row is None:
            return None
        mode, filename, value = row
        if mode == diskcache.core.MODE_RAW and isinstance(value, bytes):
            return bytes(value)
        if mode == diskcache.core.MODE_BINARY and filename:
            path = (self._directory / str(filename)).resolve()
            if self._directory.resolve() not in path.parents:
                raise StoreError(f"cache entry {key} points outside the cache")
            return path.read_bytes()
        raise StoreError(f"cache entry {key} is not raw bytes (mode {mode})")

    def set_all(self, values: Mapping[str, bytes]) -> None:
        raise StoreError(self._why)

    def delete(self, key: str) -> None:
        raise StoreError(self._why)

    def keys(self) -> list[str]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT key FROM Cache WHERE raw = 1").fetchall()
        return [key for (key,) in rows if isinstance(key, str)]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _wait_for_writers(database: Path, seconds: float) -> None:
    """Raise sqlite's "database is locked" if a writer holds it past `seconds`.

    diskcache retries its opening statements for a fixed minute; asking first
    keeps a hung writer from costing that minute.
    """
    if not database.is_file():
        return
    probe = sqlite3.connect(database, timeout=seconds)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
    finally:
        probe.close()


def _why_unwritable(directory: Path, cause: Exception | None) -> str:
    """A read-only store's explanation: what is in the way, and what to do."""
    if directory.exists() and not directory.is_dir():
        return (
            f"the prisyn cache path {directory} is a file, not a directory; "
            "remove it or set --prisyn-cache-dir"
        )
    detail = f" ({cause})" if cause is not None else ""
    return (
        f"the prisyn cache at {directory} is read-only{detail}; check its "
        "permissions or set --prisyn-cache-dir"
    )


def _unreadable(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return "not a database" in text or "malformed" in text


def encode(entry: Entry) -> bytes:
    """Serialise an entry to the documented byte layout."""
    parts = [write_arrow(entry.frame), write_arrow(entry.catalog)]
    header = {
        "metadata": entry.metadata,
        "parts": [
            {
                "name": name,
                "encoding": ARROW,
                "size": len(part),
                "sha256": hashlib.sha256(part).hexdigest(),
            }
            for name, part in zip(PARTS, parts, strict=True)
        ],
    }
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + len(head).to_bytes(8, "big") + head + b"".join(parts)


def decode(raw: bytes) -> Entry:
    """Parse and verify an entry; raise `StoreError` saying what is wrong."""
    header, offset = _split(raw)
    specs = header["parts"]
    metadata = header["metadata"]
    frames = []
    for name, spec in zip(PARTS, specs, strict=False):
        part = raw[offset : offset + int(spec["size"])]
        offset += len(part)
        if (
            len(part) != spec["size"]
            or hashlib.sha256(part).hexdigest() != spec["sha256"]
        ):
            raise StoreError(f"{name} part is truncated or fails its checksum")
        read = read_arrow if spec.get("encoding") == ARROW else read_parquet
        frames.append(read(part, f"{name} part"))
    if len(frames) != len(PARTS) or offset != len(raw):
        raise StoreError("entry has missing or trailing parts")
    return Entry(frames[0], frames[1], metadata)


def _split(raw: bytes) -> tuple[dict[str, Any], int]:
    """The parsed header of an entry and the offset where its parts start."""
    if not raw.startswith(MAGIC):
        raise StoreError("not a prisyn entry (bad magic bytes)")
    size = int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 8], "big")
    start = len(MAGIC) + 8
    try:
        header = json.loads(raw[start : start + size])
        if not isinstance(header["parts"], list) or not isinstance(
            header["metadata"], dict
        ):
            raise TypeError("parts must be a list and metadata an object")
    except (ValueError, KeyError, TypeError) as error:
        raise StoreError(f"unreadable entry header: {error}") from None
    return header, start + size


def write_arrow(frame: pd.DataFrame) -> bytes:
    """A frame as an LZ4-compressed Arrow IPC stream, without its index."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_arrow(payload: bytes, name: str) -> pd.DataFrame:
    """An Arrow IPC stream to a frame, single-threaded (see `read_parquet`)."""
    import pyarrow as pa

    try:
        options = pa.ipc.IpcReadOptions(use_threads=False)
        with pa.ipc.open_stream(pa.BufferReader(payload), options=options) as reader:
            frame: pd.DataFrame = reader.read_all().to_pandas(use_threads=False)
    except Exception as error:
        raise StoreError(f"{name} is not a readable Arrow stream: {error}") from None
    return frame


def read_parquet(payload: bytes, name: str) -> pd.DataFrame:
    """Parquet bytes to a frame, single-threaded; `StoreError` if unreadable.

    pyarrow's threaded reader can leave pool threads behind that abort the
    interpreter at exit ("terminate called without an active exception"),
    seen in about 1 of 75 processes here; one thread costs ~30% on 1M rows.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(payload), use_threads=False)
        frame: pd.DataFrame = table.to_pandas(use_threads=False)
    except Exception as error:
        raise StoreError(f"{name} is not readable Parquet: {error}") from None
    return frame


def write_parquet(frame: pd.DataFrame) -> bytes:
    """A frame as zstd-compressed Parquet bytes, without its index."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False, compression="zstd")
    return buffer.getvalue()
