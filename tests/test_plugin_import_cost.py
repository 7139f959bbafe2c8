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
