"""A suite that never uses prisyn must not pay for its heavy imports."""

from __future__ import annotations

HEAVY_MODULES = ("pandas", "google.genai", "pydantic", "pyarrow", "numpy")


def test_unused_plugin_imports_no_heavy_module(pytester):
    pytester.makepyfile(
        f"""
        import sys

        import pytest

        @pytest.mark.parametrize("module", {HEAVY_MODULES!r})
        def test_not_imported(module):
            assert module not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.stdout.fnmatch_lines(["prisyn: backend *"])
    result.assert_outcomes(passed=len(HEAVY_MODULES))


def test_nor_at_the_end_of_the_run_even_with_a_cache_present(pytester):
    # Housekeeping at session end once imported the whole engine for suites
    # that never asked for data (found by benchmarks/cache.py: +118 ms).
    pytester.makepyfile(
        test_uses="""
        import pytest

        @pytest.mark.prisyn("tech", n_users=5, n_items=10, n_interactions=20)
        def test_data(prisyn_dataset):
            pass
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    (pytester.path / "test_uses.py").unlink()
    pytester.makeconftest(
        f"""
        import sys

        def pytest_unconfigure(config):
            loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
            with open("loaded.txt", "w") as out:
                out.write(",".join(loaded))
        """
    )
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)

    assert (pytester.path / "loaded.txt").read_text() == ""
