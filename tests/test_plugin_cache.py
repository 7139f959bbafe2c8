"""The dataset cache across runs: reuse, regeneration, offline mode and xdist."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"
PROFILES = ("tech", "fitness", "foodie")
HASHING_SUITE = f"""
import pandas as pd
import pytest

@pytest.mark.prisyn({SIZES})
@pytest.mark.parametrize("prisyn_dataset", {list(PROFILES)!r}, indirect=True)
def test_record_hash(prisyn_dataset, request, pytestconfig):
    profile = request.node.callspec.id
    digest = int(pd.util.hash_pandas_object(prisyn_dataset).sum())
    out = pytestconfig.rootpath / "hashes"
    out.mkdir(exist_ok=True)
    (out / profile).write_text(str(digest))
"""


def summary(result: pytest.RunResult) -> tuple[int, int]:
    """(from cache, generated) from the run's prisyn summary line."""
    text = result.stdout.str()
    match = re.search(r"datasets: (\d+) from cache, (\d+) generated", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def hashes(pytester: pytest.Pytester) -> dict[str, str]:
    """What each inner test wrote: profile -> hash of its frame."""
    folder = pytester.path / "hashes"
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def test_second_run_generates_nothing_and_serves_identical_frames(pytester):
    pytester.makepyfile(HASHING_SUITE)
    first = pytester.runpytest()
    first.assert_outcomes(passed=3)
    assert summary(first) == (0, 3)
    recorded = hashes(pytester)

    second = pytester.runpytest()
    second.assert_outcomes(passed=3)
    assert summary(second) == (3, 0)
    second.stdout.fnmatch_lines(["*3 from cache, 0 generated*"])
    assert hashes(pytester) == recorded


def test_second_run_in_a_fresh_interpreter_hits_the_cache(pytester):
    pytester.makepyfile(HASHING_SUITE)
    first = pytester.runpytest_subprocess()
    first.assert_outcomes(passed=3)
    recorded = hashes(pytester)
    second = pytester.runpytest_subprocess()
    second.assert_outcomes(passed=3)
    assert summary(second) == (3, 0)
    assert hashes(pytester) == recorded


def test_cache_clear_does_not_wipe_the_prisyn_cache(pytester):
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)
    result = pytester.runpytest("--cache-clear")
    result.assert_outcomes(passed=3)
    assert summary(result) == (3, 0)
    assert (pytester.path / ".prisyn").is_dir()


def test_regen_all_generates_again_with_the_same_data(pytester):
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)
    recorded = hashes(pytester)
    result = pytester.runpytest("--prisyn-regen")
    result.assert_outcomes(passed=3)
    assert summary(result) == (0, 3)
    assert hashes(pytester) == recorded


def test_regen_named_profiles_only(pytester):
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)
    result = pytester.runpytest("--prisyn-regen=tech,fitness")
    result.assert_outcomes(passed=3)
    assert summary(result) == (1, 2)
    after = pytester.runpytest()
    assert summary(after) == (3, 0)


def test_regen_regenerates_a_dataset_once_per_run(pytester):
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.prisyn("tech", {SIZES})

        def test_one(prisyn_dataset):
            pass

        def test_two(prisyn_dataset):
            pass
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    result = pytester.runpytest("--prisyn-regen")
    result.assert_outcomes(passed=2)
    assert summary(result)[1] == 1


def test_different_requests_get_different_entries(pytester):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES}, seed=1)
        def test_seed_one(prisyn_dataset):
            pass

        @pytest.mark.prisyn("tech", {SIZES}, seed=2)
        def test_seed_two(prisyn_dataset):
            pass

        @pytest.mark.prisyn("tech", n_users=20, n_items=60, n_interactions=300)
        def test_more_items(prisyn_dataset):
            pass
        """
    )
    first = pytester.runpytest()
    first.assert_outcomes(passed=3)
    assert summary(first) == (0, 3)


def test_offline_with_simulate_backend_still_works(pytester):
    pytester.makepyfile(HASHING_SUITE)
    result = pytester.runpytest("--prisyn-offline", "--prisyn-backend=simulate")
    result.assert_outcomes(passed=3)
    assert summary(result) == (0, 3)


def test_offline_gemini_miss_fails_with_a_recording_hint(pytester):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        def test_needs_gemini(prisyn_dataset):
            pass
        """
    )
    result = pytester.runpytest("--prisyn-offline", "--prisyn-backend=gemini")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "prisyn:" in text
    assert "tech" in text
    assert re.search(r"\b[0-9a-f]{64}\b", text), "no fingerprint in the message"
    assert str(pytester.path / ".prisyn") in text
    test_id = (
        "test_offline_gemini_miss_fails_with_a_recording_hint.py::test_needs_gemini"
    )
    assert (
        "record it with: GEMINI_API_KEY=<your key> pytest --prisyn-online "
        f"--prisyn-backend=gemini '{test_id}'"
    ) in text
    assert "Traceback" not in text
    assert "pytest_prisyn/" not in text


def test_simulated_entries_are_not_served_as_gemini_data(pytester):
    """Gemini runs miss simulated entries; auto runs replay them offline."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        def test_data(prisyn_dataset):
            pass
        """
    )
    pytester.runpytest("--prisyn-backend=simulate").assert_outcomes(passed=1)
    result = pytester.runpytest("--prisyn-offline", "--prisyn-backend=gemini")
    result.assert_outcomes(errors=1)
    auto = pytester.runpytest("--prisyn-offline")
    auto.assert_outcomes(passed=1)
    assert summary(auto) == (1, 0)


def test_xdist_run_passes_and_shares_the_cache(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(HASHING_SUITE)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    serial.assert_outcomes(passed=3)
    recorded = hashes(pytester)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert hashes(pytester) == recorded


def test_xdist_cold_cache_run_passes(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        HASHING_SUITE,
        test_more=f"""
        import pytest

        @pytest.mark.prisyn({SIZES})
        @pytest.mark.parametrize(
            "prisyn_dataset", ["tech", "fitness", "foodie"], indirect=True
        )
        def test_same_data_other_module(prisyn_dataset):
            assert len(prisyn_dataset) == 300
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    after = pytester.runpytest("-p", "no:cacheprovider")
    assert summary(after)[1] == 0


def test_xdist_run_reports_the_summary_on_the_controller(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(HASHING_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert re.search(r"^=+ prisyn =+$", result.stdout.str(), re.MULTILINE)
    assert summary(result)[1] == 3


def test_damaged_entry_is_discarded_and_regenerated(pytester):
    sqlite3 = pytest.importorskip("sqlite3")
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)
    recorded = hashes(pytester)

    database = sqlite3.connect(pytester.path / ".prisyn" / "cache.db")
    with database:
        key, value = database.execute(
            "SELECT key, value FROM Cache WHERE key LIKE 'dataset:%' LIMIT 1"
        ).fetchone()
        damaged = bytes(value[:-1]) + bytes([value[-1] ^ 0xFF])
        database.execute("UPDATE Cache SET value = ? WHERE key = ?", (damaged, key))
    database.close()

    result = pytester.runpytest()
    result.assert_outcomes(passed=3)
    assert summary(result) == (2, 1)
    result.stdout.fnmatch_lines(["*damaged*: 1"])
    assert hashes(pytester) == recorded


def test_unusable_cache_dir_still_serves_data_and_says_it_was_not_cached(pytester):
    (pytester.path / "not-a-dir").write_text("a file where the cache should be")
    pytester.makepyfile(HASHING_SUITE)
    result = pytester.runpytest("--prisyn-cache-dir=not-a-dir")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "datasets generated but not cached: 3 (the prisyn cache path *not-a-dir "
            "is a file, not a directory; remove it or set --prisyn-cache-dir)"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_locked_database_costs_one_timeout_and_says_why(pytester):
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest("--prisyn-regen").assert_outcomes(passed=3)
    holder = sqlite3.connect(pytester.path / ".prisyn" / "cache.db", timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = pytester.runpytest("--prisyn-regen")
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()

    # Not read, so not regenerated either: that could mean paying Gemini again.
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*prisyn: cannot open the prisyn cache at *database is locked; another "
            "process holds its database*"
        ]
    )
    assert took < 25


def test_damaged_index_is_moved_aside_and_the_summary_says_where(pytester):
    pytester.makepyfile(HASHING_SUITE)
    pytester.runpytest().assert_outcomes(passed=3)
    (pytester.path / ".prisyn" / "cache.db").write_bytes(b"garbage" * 1000)

    result = pytester.runpytest()

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["the cache index was damaged: moved aside to *cache.db.damaged-*"]
    )
