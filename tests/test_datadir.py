"""Committed data directories: export, import, replay, and nothing trusted blindly."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pytest_prisyn.datadir import DataDir, export, import_into, read_folder
from pytest_prisyn.errors import StoreError
from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.simulate import Simulator
from pytest_prisyn.store import Entry, Store

REQUEST = {"population": [["tech", 1.0]], "n_users": 10, "seed": 1}
# As for every real entry: the sha256 of the request's canonical JSON.
FINGERPRINT = hashlib.sha256(
    json.dumps(REQUEST, sort_keys=True, separators=(",", ":")).encode()
).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    sim = Simulator(
        population=[("tech", 1.0)],
        specs={"tech": BUILTIN["tech"].spec},
        n_users=10,
        n_items=30,
        n_interactions=100,
        seed=1,
    )
    metadata = {
        "request": REQUEST,
        "backend": "gemini",
        "model": "gemini-2.5-flash",
        "model_version": "gemini-2.5-flash-001",
        "rows": 100,
        "usage": {"calls": 1, "prompt_tokens": 10, "output_tokens": 20},
    }
    cache = Store(tmp_path / "cache")
    cache.put(FINGERPRINT, Entry(sim.frame(), sim.catalog(), metadata))
    return cache


def test_export_writes_a_reviewable_folder(store: Store, tmp_path: Path) -> None:
    [folder] = export(store, tmp_path / "data")

    assert folder.name == "tech-" + FINGERPRINT[:12]
    assert sorted(p.name for p in folder.iterdir()) == [
        "catalog.parquet",
        "interactions.parquet",
        "manifest.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["fingerprint"] == FINGERPRINT
    assert manifest["model_version"] == "gemini-2.5-flash-001"
    assert manifest["rows"] == 100
    assert set(manifest["files"]) == {"interactions.parquet", "catalog.parquet"}
    assert not list((tmp_path / "data").glob(".export-*"))


def test_data_dir_round_trips_and_imports(store: Store, tmp_path: Path) -> None:
    export(store, tmp_path / "data")
    original = store.get(FINGERPRINT)
    assert original is not None

    found = DataDir(tmp_path / "data").get(FINGERPRINT)
    assert found is not None
    pd.testing.assert_frame_equal(found.frame, original.frame)
    pd.testing.assert_frame_equal(found.catalog, original.catalog)

    fresh = Store(tmp_path / "other-cache")
    assert import_into(fresh, tmp_path / "data") == [FINGERPRINT]
    again = fresh.get(FINGERPRINT)
    assert again is not None
    pd.testing.assert_frame_equal(again.frame, original.frame)


def test_pickle_payload_in_place_of_parquet_is_refused(
    store: Store, tmp_path: Path
) -> None:
    [folder] = export(store, tmp_path / "data")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(str(marker)))
    (folder / "interactions.parquet").write_bytes(payload)

    with pytest.raises(StoreError, match="does not match the sha256"):
        DataDir(tmp_path / "data").get(FINGERPRINT)

    # Even with a matching checksum, the bytes only ever reach a Parquet reader.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["interactions.parquet"] = hashlib.sha256(payload).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="not readable Parquet"):
        read_folder(folder)
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize(
    "rename",
    ["Tech-" + FINGERPRINT[:12], "tech-" + "cd" * 6, "tech " + FINGERPRINT[:12]],
)
def test_folders_with_unexpected_names_are_ignored(
    store: Store, tmp_path: Path, rename: str
) -> None:
    [folder] = export(store, tmp_path / "data")
    folder.rename(folder.with_name(rename))

    assert DataDir(tmp_path / "data").index() == {}


def test_symlinked_folders_are_ignored(store: Store, tmp_path: Path) -> None:
    [folder] = export(store, tmp_path / "elsewhere")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / folder.name).symlink_to(folder)

    assert DataDir(tmp_path / "data").index() == {}


def test_symlinked_files_are_refused(store: Store, tmp_path: Path) -> None:
    [folder] = export(store, tmp_path / "data")
    outside = tmp_path / "secret.parquet"
    shutil.copy(folder / "interactions.parquet", outside)
    (folder / "interactions.parquet").unlink()
    (folder / "interactions.parquet").symlink_to(outside)

    with pytest.raises(StoreError, match="not a regular file"):
        read_folder(folder)


def test_manifest_fingerprint_must_match_the_folder(
    store: Store, tmp_path: Path
) -> None:
    [folder] = export(store, tmp_path / "data")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["fingerprint"] = "cd" * 32
    (folder / "manifest.json").write_text(json.dumps(manifest))

    assert DataDir(tmp_path / "data").index() == {}


SUITE = """
import pytest

@pytest.mark.prisyn("tech", n_users=10, n_items=30, n_interactions=100, seed=4)
def test_data(prisyn_dataset):
    assert len(prisyn_dataset) == 100
    prisyn_dataset.to_csv("seen.csv", index=False)
"""


def test_ci_recipe_commit_the_data_then_replay_offline(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    pytester.runpytest("--prisyn-backend=simulate").assert_outcomes(passed=1)
    recorded = (pytester.path / "seen.csv").read_text()
    cache = Store(pytester.path / ".prisyn")
    export(cache, pytester.path / "prisyn-data")
    cache.close()
    shutil.rmtree(pytester.path / ".prisyn")

    result = pytester.runpytest(
        "--prisyn-backend=simulate",
        "--prisyn-offline",
        "--prisyn-data-dir=prisyn-data",
        "--prisyn-cache-dir=empty-cache",
    )

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["datasets: 0 from cache, 1 from committed data, 0 generated"]
    )
    assert (pytester.path / "seen.csv").read_text() == recorded


def test_damaged_committed_data_fails_naming_the_folder(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    pytester.runpytest("--prisyn-backend=simulate").assert_outcomes(passed=1)
    [folder] = export(Store(pytester.path / ".prisyn"), pytester.path / "data")
    (folder / "catalog.parquet").write_bytes(b"garbage")

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-data-dir=data")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*prisyn: *{folder.name}*sha256*re-export*"])


def test_hand_edited_request_is_refused_and_reported(
    store: Store, tmp_path: Path
) -> None:
    [folder] = export(store, tmp_path / "data")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["request"]["n_users"] = 10_000
    (folder / "manifest.json").write_text(json.dumps(manifest))
    data = DataDir(tmp_path / "data")

    assert data.get(FINGERPRINT) is None
    [(name, problem)] = data.problems
    assert name == folder.name
    assert "does not hash to its fingerprint" in problem


def test_import_names_the_folders_it_could_not_read(
    store: Store, tmp_path: Path
) -> None:
    [folder] = export(store, tmp_path / "data")
    (folder / "manifest.json").write_text("{ not json")

    with pytest.raises(StoreError, match=f"{folder.name}/manifest.json is unreadable"):
        import_into(Store(tmp_path / "fresh"), tmp_path / "data")


def test_damaged_manifest_is_reported_in_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    pytester.runpytest("--prisyn-backend=simulate").assert_outcomes(passed=1)
    [folder] = export(Store(pytester.path / ".prisyn"), pytester.path / "data")
    (folder / "manifest.json").write_text("garbage")

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-data-dir=data")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"committed data ignored: {folder.name}/manifest.json is unreadable*"]
    )
