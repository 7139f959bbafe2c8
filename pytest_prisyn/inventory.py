"""What is recorded but unused, old or stale: the cache's housekeeping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_prisyn.request import FORMAT_VERSION
from pytest_prisyn.store import Store


@dataclass
class Inventory:
    """Recorded datasets no test of a whole-suite run asked for."""

    unused: list[tuple[str, str]] = field(default_factory=list)  # fingerprint, label
    old_formats: list[tuple[str, str]] = field(default_factory=list)
    pruned: int = 0


def take_inventory(
    directory: Path,
    served: set[str],
    *,
    suite: set[str],
    backends: set[str],
    prune: bool,
) -> Inventory:
    """List (and with `prune`, delete) cached datasets that were not served.

    Only entries this run could have served count: recorded by this suite
    (its top-level test folders, as in `suite`) and by one of `backends`.
    Another suite sharing the cache, or data of another backend, is kept.
    """
    inventory = Inventory()
    if not (directory / "cache.db").is_file():
        return inventory
    store = Store(directory)
    try:
        for fingerprint in store.fingerprints():
            if fingerprint in served:
                continue
            metadata = store.metadata(fingerprint) or {}
            if metadata.get("recorded_by") not in suite | {None, ""}:
                continue
            if metadata.get("backend") not in backends:
                continue
            found = (fingerprint, label(metadata))
            inventory.unused.append(found)
            if metadata.get("format_version") != FORMAT_VERSION:
                inventory.old_formats.append(found)
            if prune:
                store.delete(fingerprint)
                inventory.pruned += not store.contains(fingerprint)
    finally:
        store.close()
    return inventory


def label(metadata: dict[str, Any]) -> str:
    """``tech 20u/50it/300r seed=3 (simulate, format 1)`` from entry metadata."""
    request = metadata.get("request") or {}
    names = "+".join(str(pair[0]) for pair in request.get("population") or [])
    return (
        f"{names or '?'} {request.get('n_users')}u/{request.get('n_items')}it/"
        f"{request.get('n_interactions')}r seed={request.get('seed')} "
        f"({metadata.get('backend')}, format {metadata.get('format_version')})"
    )


def age_seconds(metadata: dict[str, Any], now: float | None = None) -> float | None:
    """How old an entry is, from its metadata; None when it does not say."""
    created = metadata.get("created_unix")
    if not isinstance(created, int | float):
        try:
            created = datetime.fromisoformat(str(metadata.get("created"))).timestamp()
        except ValueError:
            return None
    return (time.time() if now is None else now) - float(created)
