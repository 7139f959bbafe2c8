"""Profiles declared by users in ``[tool.prisyn.profiles.<name>]``."""

from __future__ import annotations

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"
COFFEE = """
[tool.prisyn.profiles.coffee]
description = "Coffee lovers who buy espresso machines, pour-over kits and beans."
categories = {espresso = 3, "pour-over" = 2, beans = 2}
star_shares = [0.05, 0.07, 0.18, 0.35, 0.35]
"""
DESCRIPTION_ONLY = """
[tool.prisyn.profiles.tea]
description = "Tea drinkers who try loose-leaf teas from many regions."
"""
NO_DESCRIPTION = """
[tool.prisyn.profiles.broken]
categories = {espresso = 3, beans = 2}
"""


def use_profile(pytester: pytest.Pytester, profile: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn({profile!r}, {SIZES})
        def test_data(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {{{profile!r}}}
            assert set(prisyn_dataset["category"]) <= {{
                "espresso", "pour-over", "beans"
            }}
            assert len(prisyn_dataset) == 300
        """
    )


def clean_test_failure(result: pytest.RunResult) -> str:
    """Assert one test failed or errored with a prisyn message; return the output."""
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 1, outcomes
    text = result.stdout.str()
    assert "prisyn: " in text
    assert "Traceback" not in text
    assert "pytest_prisyn/" not in text, "traceback from the plugin's internals"
    return text


def clean_failure(result: pytest.RunResult) -> str:
    """Assert the run stopped at start-up with one clean prisyn usage error.

    A broken [tool.prisyn] table is a configuration error: reported once,
    before any test runs, not once per test that asks for data.
    """
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert text.count("prisyn: ") == 1, text
    assert "Traceback" not in text + result.stdout.str()
    assert "pytest_prisyn/" not in text, "traceback from the plugin's internals"
    return text


@pytest.mark.parametrize("backend", ["simulate", "auto"])
def test_user_profile_with_a_spec_works_with_the_simulator(pytester, backend):
    pytester.makepyprojecttoml(COFFEE)
    use_profile(pytester, "coffee")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--prisyn-backend={backend}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*(simulate: 1)*"])


def test_user_profile_is_listed_by_the_engine(pytester):
    pytester.makepyprojecttoml(COFFEE)
    pytester.makepyfile(
        """
        def test_listed(prisyn):
            assert "coffee" in prisyn.profiles()
            assert len(prisyn.profiles()) == 10
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_user_profile_mixes_with_built_ins(pytester):
    pytester.makepyprojecttoml(COFFEE)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn(["coffee", "foodie"], {SIZES})
        def test_mix(prisyn_dataset):
            users = prisyn_dataset.groupby("profile", observed=True)["user_id"]
            assert users.nunique().to_dict() == {{"coffee": 10, "foodie": 10}}
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_changing_a_user_profile_changes_its_cache_entry(pytester):
    pytester.makepyprojecttoml(COFFEE)
    use_profile(pytester, "coffee")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.makepyprojecttoml(COFFEE.replace("espresso = 3", "espresso = 9"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["datasets: 0 from cache, 1 generated*"])


def test_description_only_profile_under_simulate_needs_a_spec_or_key(pytester):
    pytester.makepyprojecttoml(DESCRIPTION_ONLY)
    use_profile(pytester, "tea")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-backend=simulate")
    text = clean_test_failure(result)
    assert "tea" in text
    assert "spec" in text
    assert "GEMINI_API_KEY" in text


def test_description_only_profile_under_auto_without_a_key(pytester):
    pytester.makepyprojecttoml(DESCRIPTION_ONLY)
    use_profile(pytester, "tea")
    result = pytester.runpytest("-p", "no:cacheprovider")
    text = clean_test_failure(result)
    assert "tea" in text
    assert "no API key is set" in text


def test_profile_without_description_fails_clearly(pytester):
    pytester.makepyprojecttoml(NO_DESCRIPTION)
    use_profile(pytester, "broken")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-backend=simulate")
    text = clean_failure(result)
    assert "broken" in text
    assert "description" in text


def test_malformed_profile_is_reported_once_at_start_up(pytester):
    pytester.makepyprojecttoml(NO_DESCRIPTION)
    pytester.makepyfile("def test_plain():\n    pass\n")
    text = clean_failure(pytester.runpytest("-p", "no:cacheprovider"))
    assert "description" in text


def test_unknown_prisyn_table_key_is_named(pytester):
    pytester.makepyprojecttoml('[tool.prisyn]\nbackend = "simulate"\n')
    pytester.makepyfile("def test_plain():\n    pass\n")
    text = clean_failure(pytester.runpytest("-p", "no:cacheprovider"))
    assert "unknown key(s) backend; accepted: profiles" in text


def test_missing_spec_field_fails_clearly(pytester):
    pytester.makepyprojecttoml(COFFEE.replace("star_shares", "# star_shares"))
    use_profile(pytester, "coffee")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-backend=simulate")
    text = clean_failure(result)
    assert "coffee" in text
    assert "star_shares" in text


def test_misspelled_spec_field_is_not_silently_ignored(pytester):
    pytester.makepyprojecttoml(COFFEE + "sesion_size = 4\n")
    use_profile(pytester, "coffee")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-backend=simulate")
    text = clean_failure(result)
    assert "sesion_size" in text


def test_invalid_profile_name_fails_clearly(pytester):
    pytester.makepyprojecttoml(COFFEE.replace("profiles.coffee", "profiles.Coffee"))
    use_profile(pytester, "tech")
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-backend=simulate")
    text = clean_failure(result)
    assert "'Coffee'" in text
