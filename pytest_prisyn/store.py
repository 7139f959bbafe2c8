"""The on-disk cache: one diskcache entry per dataset fingerprint, never a pickle.

An entry's value is one byte string laid out as::

    b"PRISYN\\x01"  magic and layout version
    8 bytes         length of the header, big-endian
    header          UTF-8 JSON: metadata, and for each part its size and sha256
    parts           Parquet bytes of the interactions, then of the item catalog

Every part's checksum is verified on read; an entry that fails any check is
reported as damaged, deleted, and treated as a miss. diskcache's own pickle
mode is refused outright, so a value planted by someone else cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
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
SPEC_PREFIX = "spec:"
DATASET_PREFIX = "dataset:"


@dataclass
class Entry:
    """A recorded dataset: interactions, item catalog and what made them."""

    frame: pd.DataFrame
    catalog: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)


class Store:
    """Datasets and Gemini-written specs in a diskcache directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: diskcache.Cache | None = None
        self.damaged: list[str] = []

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
        raw = self._fetch(DATASET_PREFIX + fingerprint)
        if raw is None:
            return None
        try:
            return _split(raw)[0]["metadata"]  # type: ignore[no-any-return]
        except StoreError:
            return {"damaged": True}

    def contains(self, fingerprint: str) -> bool:
        """Whether an entry exists (without reading or checking it)."""
        return DATASET_PREFIX + fingerprint in self._open()

    def put(self, fingerprint: str, entry: Entry) -> None:
        """Store a complete, validated entry in one transaction."""
        self._write(DATASET_PREFIX + fingerprint, encode(entry))

    def delete(self, fingerprint: str) -> None:
        """Remove an entry if present."""
        try:
            self._open().delete(DATASET_PREFIX + fingerprint)
        except Exception as error:  # a read-only cache still serves reads
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
        self._write(SPEC_PREFIX + key, json.dumps(document, sort_keys=True).encode())

    def fingerprints(self) -> Iterator[str]:
        """Fingerprints of every stored dataset."""
        for key in self._open().iterkeys():
            if isinstance(key, str) and key.startswith(DATASET_PREFIX):
                yield key.removeprefix(DATASET_PREFIX)

    def close(self) -> None:
        """Close the underlying database."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def _fetch(self, key: str) -> bytes | None:
        try:
            value = self._open().get(key, default=None)
        except StoreError:
            raise
        except Exception as error:
            raise StoreError(
                f"cannot read the prisyn cache at {self.directory}: {error}; "
                "delete the directory to start afresh"
            ) from None
        if value is None or isinstance(value, bytes):
            return value
        raise StoreError(f"cache entry {key} is not raw bytes")

    def _write(self, key: str, value: bytes) -> None:
        try:
            self._open().set(key, value)
        except Exception as error:
            raise StoreError(
                f"cannot write to the prisyn cache at {self.directory}: {error}"
            ) from None

    def _open(self) -> diskcache.Cache:
        if self._cache is None:
            try:
                self._cache = diskcache.Cache(str(self.directory), disk=_RawDisk)
            except Exception as error:
                raise StoreError(
                    f"cannot open the prisyn cache at {self.directory}: {error}"
                ) from None
        return self._cache


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


def encode(entry: Entry) -> bytes:
    """Serialise an entry to the documented byte layout."""
    parts = [_parquet(entry.frame), _parquet(entry.catalog)]
    header = {
        "metadata": entry.metadata,
        "parts": [
            {
                "name": name,
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
        frames.append(_read_parquet(part, name))
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


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False, compression="zstd")
    return buffer.getvalue()


def _read_parquet(part: bytes, name: str) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(io.BytesIO(part), engine="pyarrow")
    except Exception as error:
        raise StoreError(f"{name} part is not readable Parquet: {error}") from None
