"""Committed data: datasets as Parquet files plus a readable JSON manifest.

A data directory is meant to be committed and reviewed in a pull request, then
replayed read-only in CI. Its layout, one folder per dataset::

    <data dir>/
        tech-3fa9c1d20b7e/          <profiles>-<first 12 hex of the fingerprint>
            manifest.json           request, fingerprint, backend, model, rows, ...
            interactions.parquet
            catalog.parquet

Reading trusts nothing in it: folder names must match the pattern above, file
names are fixed (never taken from a manifest), every file's sha256 must match
the manifest, and only JSON and Parquet are parsed, so a crafted directory can
neither run code nor make us read outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pytest_prisyn.errors import StoreError
from pytest_prisyn.store import Entry, Store, read_parquet, write_parquet

MANIFEST = "manifest.json"
FILES = {"frame": "interactions.parquet", "catalog": "catalog.parquet"}
FOLDER_PATTERN = re.compile(r"^[a-z0-9_+-]{1,200}-[0-9a-f]{12}$")
FINGERPRINT_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_FIELDS = (
    "fingerprint",
    "request",
    "backend",
    "model",
    "model_version",
    "created",
    "created_unix",
    "rows",
    "usage",
    "format_version",
    "package_version",
)


class DataDir:
    """A committed data directory, read-only, indexed by fingerprint on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._index: dict[str, Path] | None = None
        self.problems: list[tuple[str, str]] = []  # folder name, what is wrong

    def get(self, fingerprint: str) -> Entry | None:
        """The committed entry for `fingerprint`, or None if it has none.

        Raises `StoreError` naming the folder when the entry is damaged.
        """
        folder = self.index().get(fingerprint)
        return None if folder is None else read_folder(folder)

    def index(self) -> dict[str, Path]:
        """Fingerprint -> folder, from the manifests (data files are not read)."""
        if self._index is None:
            self._index = {}
            if self.directory.is_dir():
                for folder in sorted(self.directory.iterdir()):
                    if not folder.is_dir() or folder.name.startswith("."):
                        continue
                    try:
                        manifest = checked_manifest(folder)
                    except StoreError as error:
                        self.problems.append((folder.name, str(error)))
                        continue
                    self._index[manifest["fingerprint"]] = folder
        return self._index


def export(
    store: Store, directory: Path, fingerprints: list[str] | None = None
) -> list[Path]:
    """Write cached datasets into a data directory; return the folders written.

    Each folder is written under a temporary name and renamed into place, so
    an interrupted export never leaves a half-written dataset behind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fingerprint in (
        fingerprints if fingerprints is not None else store.fingerprints()
    ):
        entry = store.get(fingerprint)
        if entry is None:
            continue
        written.append(write_folder(directory, fingerprint, entry))
    return written


def import_into(store: Store, directory: Path) -> list[str]:
    """Copy every dataset of a data directory into the cache; return fingerprints."""
    data = DataDir(directory)
    imported = []
    for fingerprint, folder in data.index().items():
        store.put(fingerprint, read_folder(folder))
        imported.append(fingerprint)
    if data.problems:
        raise StoreError(
            f"imported {len(imported)} datasets from {directory}, but could not read "
            + "; ".join(problem for _, problem in data.problems)
        )
    return imported


def write_folder(directory: Path, fingerprint: str, entry: Entry) -> Path:
    """Write one dataset folder atomically and return its path."""
    if not FINGERPRINT_PATTERN.match(fingerprint):
        raise StoreError(f"not a fingerprint: {fingerprint!r}")
    target = directory / folder_name(fingerprint, entry.metadata)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    try:
        digests = {}
        for part, name in FILES.items():
            payload = write_parquet(getattr(entry, part))
            (staging / name).write_bytes(payload)
            digests[name] = hashlib.sha256(payload).hexdigest()
        manifest = {key: entry.metadata.get(key) for key in MANIFEST_FIELDS}
        manifest["fingerprint"] = fingerprint
        manifest["files"] = digests
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def folder_name(fingerprint: str, metadata: dict[str, Any]) -> str:
    """``<profiles>-<12 hex>``, from the profile names of the request."""
    population = (metadata.get("request") or {}).get("population") or []
    names = [str(pair[0]) for pair in population if pair]
    label = re.sub(r"[^a-z0-9_+-]", "", "+".join(names).lower())[:200] or "dataset"
    return f"{label}-{fingerprint[:12]}"


def read_folder(folder: Path) -> Entry:
    """Read and verify one dataset folder; raise `StoreError` on any damage."""
    manifest = checked_manifest(folder)
    frames = {}
    for part, name in FILES.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise StoreError(f"{path} is missing or not a regular file")
        payload = path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != manifest["files"].get(name):
            raise StoreError(
                f"{path} does not match the sha256 in its manifest; re-export it "
                "with 'prisyn cache export' or delete the folder"
            )
        frames[part] = read_parquet(payload, str(path))
    metadata = {key: value for key, value in manifest.items() if key != "files"}
    return Entry(frames["frame"], frames["catalog"], metadata)


def checked_manifest(folder: Path) -> dict[str, Any]:
    """A folder's manifest, after checking everything that can be checked.

    Raises `StoreError` saying what is wrong: a link, a name off the pattern,
    an unreadable manifest, or a request that does not hash to its fingerprint
    (a hand-edited manifest).
    """
    if folder.is_symlink() or not folder.is_dir():
        raise StoreError(f"{folder.name} is a link or not a folder")
    if not FOLDER_PATTERN.match(folder.name):
        raise StoreError(
            f"{folder.name} is not named <profiles>-<12 hex digits of the fingerprint>"
        )
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StoreError(f"{folder.name}/{MANIFEST} is unreadable: {error}") from None
    fingerprint = manifest.get("fingerprint") if isinstance(manifest, dict) else None
    if not isinstance(fingerprint, str) or not FINGERPRINT_PATTERN.match(fingerprint):
        raise StoreError(f"{folder.name}/{MANIFEST} has no valid fingerprint")
    if not folder.name.endswith(fingerprint[:12]):
        raise StoreError(f"{folder.name} does not match its fingerprint {fingerprint}")
    if not isinstance(manifest.get("files"), dict):
        raise StoreError(f"{folder.name}/{MANIFEST} lists no file checksums")
    canonical = json.dumps(
        manifest.get("request"), sort_keys=True, separators=(",", ":")
    )
    if hashlib.sha256(canonical.encode()).hexdigest() != fingerprint:
        raise StoreError(
            f"{folder.name}/{MANIFEST}: its request does not hash to its fingerprint "
            "(edited by hand?); re-export it with 'prisyn cache export'"
        )
    return manifest  # type: ignore[no-any-return]
