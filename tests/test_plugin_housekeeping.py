"""Unused entries after a whole-suite run, --prisyn-prune, --prisyn-max-age."""

from __future__ import annotations

import json
import time

import pytest

from pytest_prisyn.request import FORMAT_VERSION
from pytest_prisyn.store import Store

TWO_TESTS = """
import pytest

@pytest.mark.prisyn("tech", n_users=10, n_items=30, n_interactions=100)
def test_tech(prisyn_dataset):
    pass

@pytest.mark.prisyn("gamer", n_users=10, n_items=30, n_interactions=100)
def test_gamer(prisyn_dataset):
    pass
"""


def rewrite_entries(
    pytester: pytest.Pytester, changes: dict[str, object], rekey: str | None = None
) -> None:
    """Change every recorded entry's metadata; with `rekey`, move it to a new
    fingerprint (made of that digit), as if another request had recorded it."""
    store = Store(pytester.path / ".prisyn")
    for fingerprint in store.fingerprints():
        entry = store.get(fingerprint)
        assert entry is not None
        entry.metadata.update(changes)
        if rekey is not None:
            store.delete(fingerprint)
            fingerprint = rekey * 63 + fingerprint[-1]
        store.put(fingerprint, entry)
    store.close()


@pytest.fixture
def recorded_two(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=TWO_TESTS)
    pytester.runpytest("--prisyn-backend=simulate").assert_outcomes(passed=2)


def test_whole_suite_run_lists_datasets_no_test_asked_for(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    pytester.makepyfile(test_suite=TWO_TESTS.split('@pytest.mark.prisyn("gamer"')[0])

    result = pytester.runpytest("--prisyn-backend=simulate")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "recorded datasets no test asked for: 1 (--prisyn-prune deletes them*",
            f"  * gamer 10u/30it/100r seed=0 (simulate, format {FORMAT_VERSION})",
        ]
    )


@pytest.mark.parametrize(
    "selection",
    [
        ["-k", "tech"],
        ["test_suite.py::test_tech"],
        ["--deselect", "test_suite.py::test_gamer"],
        ["-m", "not slow"],
    ],
)
def test_partial_runs_never_call_entries_unused(
    pytester: pytest.Pytester, recorded_two: None, selection: list[str]
) -> None:
    # gamer's dataset is recorded; a run that leaves its test out must not
    # call it unused.
    result = pytester.runpytest("--prisyn-backend=simulate", *selection)

    assert "no test asked for" not in result.stdout.str()


def test_a_run_stopped_early_never_calls_entries_unused(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    failing_first = TWO_TESTS.replace(
        "def test_tech(prisyn_dataset):\n    pass",
        "def test_tech(prisyn_dataset):\n    assert 0",
    )
    pytester.makepyfile(test_suite=failing_first)

    result = pytester.runpytest("--prisyn-backend=simulate", "-x")

    result.assert_outcomes(failed=1)
    assert "no test asked for" not in result.stdout.str()


def test_prune_deletes_only_the_unused(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    pytester.makepyfile(test_suite=TWO_TESTS.split('@pytest.mark.prisyn("gamer"')[0])

    pruned = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-prune")

    pruned.stdout.fnmatch_lines(["pruned 1 recorded dataset no test asked for"])
    store = Store(pytester.path / ".prisyn")
    labels = [
        store.metadata(fp)["request"]["population"] for fp in store.fingerprints()
    ]
    assert labels == [[["tech", 1.0]]]


def test_old_format_entries_are_reported(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    rewrite_entries(pytester, {"format_version": 0}, rekey="0")

    result = pytester.runpytest("--prisyn-backend=simulate")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*2 generated*", "2 of them were written by an older data format*"]
    )


def test_max_age_flags_then_refuses_stale_entries(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    rewrite_entries(pytester, {"created_unix": time.time() - 40 * 86_400})

    flagged = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-max-age=30d")
    flagged.stdout.fnmatch_lines(
        ["*2 from cache, 0 generated*", "datasets older than 30d: 2 (*"]
    )

    refused = pytester.runpytest(
        "--prisyn-backend=simulate", "--prisyn-max-age=30", "--prisyn-refuse-stale"
    )
    refused.stdout.fnmatch_lines(["*0 from cache, 2 generated*"])


def test_bad_max_age_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")

    result = pytester.runpytest("--prisyn-max-age=soon")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*prisyn max age 'soon' is not a duration*"])


def test_metadata_copy_lists_without_reading_data(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    store = Store(pytester.path / ".prisyn")
    for fingerprint in store.fingerprints():
        metadata = store.metadata(fingerprint)
        assert metadata is not None
        assert json.dumps(metadata)
        assert metadata["fingerprint"] == fingerprint


def test_another_suite_sharing_the_cache_keeps_its_data(
    pytester: pytest.Pytester,
) -> None:
    suite = TWO_TESTS.split('@pytest.mark.prisyn("gamer"')[0]
    pytester.mkdir("unit")
    pytester.mkdir("examples")
    (pytester.path / "unit" / "test_unit.py").write_text(suite)
    (pytester.path / "examples" / "test_examples.py").write_text(
        suite.replace('"tech"', '"music"')
    )
    pytester.makeini("[pytest]\ntestpaths = unit\n")
    pytester.runpytest("examples", "--prisyn-backend=simulate").assert_outcomes(
        passed=1
    )

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-prune")

    result.assert_outcomes(passed=1)
    assert "pruned" not in result.stdout.str()
    assert len(Store(pytester.path / ".prisyn").fingerprints()) == 2


def test_prune_never_runs_when_a_test_errored_before_asking(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    broken = (
        "import pytest\n\n@pytest.fixture\ndef database():\n"
        "    raise RuntimeError('db down')\n"
        + TWO_TESTS.replace(
            "def test_gamer(prisyn_dataset):",
            "def test_gamer(database, prisyn_dataset):",
        )
    )
    pytester.makepyfile(test_suite=broken)

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-prune")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["--prisyn-prune did nothing: not every test passed"])
    assert len(Store(pytester.path / ".prisyn").fingerprints()) == 2


def test_prune_never_runs_when_a_test_was_skipped(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    skipping = TWO_TESTS.replace(
        "def test_gamer(prisyn_dataset):\n    pass",
        "def test_gamer():\n    pytest.skip('no GPU here')",
    )
    pytester.makepyfile(test_suite=skipping)

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-prune")

    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["--prisyn-prune did nothing: some tests were skipped*"]
    )
    assert len(Store(pytester.path / ".prisyn").fingerprints()) == 2


def test_prune_keeps_data_of_another_backend(
    pytester: pytest.Pytester, recorded_two: None
) -> None:
    rewrite_entries(pytester, {"backend": "gemini"}, rekey="f")  # as if by Gemini

    result = pytester.runpytest("--prisyn-backend=simulate", "--prisyn-prune")

    result.assert_outcomes(passed=2)
    assert "pruned" not in result.stdout.str()
    assert len(Store(pytester.path / ".prisyn").fingerprints()) == 4
