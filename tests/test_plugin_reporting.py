"""The ``prisyn:`` header line, the ``prisyn`` summary section, and secrets."""

from __future__ import annotations

import re

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"
PLANTED_KEY = "sk-planted-123"
ONE_DATASET = f"""
import pytest

@pytest.mark.prisyn("tech", {SIZES})
def test_uses_data(prisyn_dataset):
    assert len(prisyn_dataset) == 300
"""
NO_DATASET = """
def test_plain():
    assert True
"""
SECTION = re.compile(r"^=+ prisyn =+$", re.MULTILINE)


def header(result: pytest.RunResult) -> str:
    """The single ``prisyn: `` line in the header block of a run."""
    block = result.outlines[: result.outlines.index("")]
    lines = [line for line in block if line.startswith("prisyn: ")]
    assert len(lines) == 1, result.outlines
    return lines[0]


def test_header_names_backend_reason_model_and_cache(pytester):
    pytester.makepyfile(NO_DATASET)
    line = header(pytester.runpytest())
    assert line.startswith("prisyn: backend auto (")
    assert "no Gemini key" in line
    assert "simulate" in line
    assert "model gemini-2.5-flash" in line
    assert line.endswith(f"cache {pytester.path / '.prisyn'}")


def test_header_for_auto_with_a_key_names_the_variable_not_the_value(
    pytester, monkeypatch
):
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    pytester.makepyfile(NO_DATASET)
    line = header(pytester.runpytest())
    assert "gemini on a miss" in line
    assert "GEMINI_API_KEY" in line
    assert PLANTED_KEY not in line


def test_header_for_simulate_backend(pytester):
    pytester.makepyfile(NO_DATASET)
    line = header(pytester.runpytest("--prisyn-backend=simulate", "--prisyn-offline"))
    assert line.startswith("prisyn: backend simulate,")
    assert "offline" in line


def test_summary_section_after_datasets_were_used(pytester):
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert SECTION.search(result.stdout.str())
    result.stdout.fnmatch_lines(["datasets: 0 from cache, 1 generated*"])


def test_no_summary_section_when_no_prisyn_fixture_is_used(pytester):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not SECTION.search(result.stdout.str())
    assert "datasets:" not in result.stdout.str()


def test_no_summary_section_when_only_the_engine_is_touched(pytester):
    pytester.makepyfile(
        """
        def test_profiles(prisyn):
            assert "tech" in prisyn.profiles()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert not SECTION.search(result.stdout.str())


def test_no_summary_section_when_every_request_failed(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn("nope")
        def test_bad(prisyn_dataset):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert not SECTION.search(result.stdout.str())


def test_auto_backend_without_a_key_uses_the_simulator(pytester):
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 generated (simulate: 1)*"])
    # Nothing was asked of Gemini, so no line about it.
    assert "gemini: " not in result.stdout.str()


def test_cold_cache_run_reports_nothing_from_cache(pytester):
    """One dataset, asked for by both fixtures of one test, is made once."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        def test_both(prisyn_dataset, prisyn_catalog):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["datasets: 0 from cache, 1 generated*"])


def test_auto_offline_with_a_key_does_what_the_header_says(pytester, monkeypatch):
    """The header promises the simulator on a miss; the dataset must then be made."""
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest("--prisyn-offline")
    line = header(result)
    if "simulate" in line.split(", model")[0]:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(errors=1)


def test_planted_key_never_reaches_output_or_cache(pytester, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("GOOGLE_API_KEY", PLANTED_KEY + "-google")
    pytester.makepyfile(
        ONE_DATASET,
        test_engine="""
        def test_engine(prisyn):
            frame = prisyn.dataset("fitness", n_users=20, n_items=50,
                                   n_interactions=300)
            assert prisyn.settings is None, frame
        """,
    )
    result = pytester.runpytest("-v", "-l", "-rA", "--prisyn-backend=simulate")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "prisyn: backend simulate" in output
    assert PLANTED_KEY not in output

    cache = pytester.path / ".prisyn"
    files = [path for path in cache.rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert PLANTED_KEY.encode() not in path.read_bytes(), path


def test_planted_key_stays_out_of_settings_comparisons(pytester, monkeypatch):
    """Settings hides the key from its repr; pytest's dataclass diff must too."""
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    pytester.makepyfile(
        """
        from pytest_prisyn.config import Settings

        def test_compare(prisyn):
            assert prisyn.settings == Settings()
        """
    )
    result = pytester.runpytest("-vv", "--prisyn-backend=simulate")
    result.assert_outcomes(failed=1)
    assert PLANTED_KEY not in result.stdout.str()


def test_planted_key_in_a_fresh_interpreter(pytester, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", PLANTED_KEY)
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest_subprocess("-v", "--prisyn-backend=simulate")
    result.assert_outcomes(passed=1)
    assert PLANTED_KEY not in result.stdout.str() + result.stderr.str()
