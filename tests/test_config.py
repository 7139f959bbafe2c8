"""Settings resolution: command line, then environment, then ini, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_prisyn.config import resolve, resolve_offline
from pytest_prisyn.errors import ConfigError


@pytest.mark.parametrize(
    ("option", "env", "ini", "expected"),
    [
        (None, {}, {}, (False, None)),
        (
            None,
            {"CI": "true"},
            {},
            (True, "CI detected; --prisyn-online allows Gemini"),
        ),
        (None, {"CI": "false"}, {}, (False, None)),
        (False, {"CI": "true"}, {}, (False, None)),
        (True, {}, {}, (True, "--prisyn-offline")),
        (None, {"PRISYN_OFFLINE": "0", "CI": "1"}, {}, (False, None)),
        (None, {"PRISYN_OFFLINE": "yes"}, {}, (True, "PRISYN_OFFLINE")),
        (None, {}, {"offline": "true"}, (True, "prisyn_offline in the ini file")),
        (None, {"CI": "1"}, {"offline": "false"}, (False, None)),
    ],
)
def test_offline_sources_in_order(
    option: bool | None, env: dict[str, str], ini: dict[str, str], expected: tuple
) -> None:
    assert resolve_offline(option, env, ini) == expected


def test_bad_offline_value_names_it() -> None:
    with pytest.raises(ConfigError, match="PRISYN_OFFLINE 'maybe' is not a boolean"):
        resolve_offline(None, {"PRISYN_OFFLINE": "maybe"}, {})


def test_key_prefers_google_api_key_and_never_shows(tmp_path: Path) -> None:
    settings = resolve(
        options={},
        ini={},
        env={"GOOGLE_API_KEY": "first", "GEMINI_API_KEY": "second"},
        rootdir=tmp_path,
    )

    assert settings.api_key == "first"
    assert settings.key_source == "GOOGLE_API_KEY"
    assert "first" not in repr(settings)


def test_dotenv_never_overrides_the_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GEMINI_API_KEY=from-dotenv\n")

    from_env = resolve(
        options={}, ini={}, env={"GEMINI_API_KEY": "env"}, rootdir=tmp_path
    )
    from_file = resolve(options={}, ini={}, env={}, rootdir=tmp_path)

    assert from_env.api_key == "env"
    assert from_file.api_key == "from-dotenv"
    assert from_file.key_source == "GEMINI_API_KEY in .env"


def test_ci_run_header_says_offline_and_why(
    pytester: pytest.Pytester, monkeypatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile("def test_nothing(): pass")

    result = pytester.runpytest()

    result.stdout.fnmatch_lines(["prisyn: *offline (CI detected; --prisyn-online*"])


@pytest.mark.parametrize(
    ("value", "tokens", "dollars"),
    [
        (None, None, None),
        ("2000000", 2_000_000, None),
        ("$5", None, 5.0),
        ("2_000_000, $0.5", 2_000_000, 0.5),
    ],
)
def test_budget_forms(
    value: str | None, tokens: int | None, dollars: float | None
) -> None:
    settings = resolve(options={"budget": value}, ini={}, env={}, rootdir=Path())

    assert (settings.budget_tokens, settings.budget_dollars) == (tokens, dollars)


@pytest.mark.parametrize("value", ["lots", "$-1", "0", "5 euros"])
def test_bad_budget_lists_the_accepted_forms(value: str) -> None:
    with pytest.raises(ConfigError, match=r"accepted: tokens, e\.g\. 2000000"):
        resolve(options={"budget": value}, ini={}, env={}, rootdir=Path())


def test_prices_from_ini_lines() -> None:
    settings = resolve(
        options={},
        ini={"prices": ["gemini-9 = 1.5 7", "", "other-model = 0.1 0.2"]},
        env={},
        rootdir=Path(),
    )

    assert settings.prices == (("gemini-9", 1.5, 7.0), ("other-model", 0.1, 0.2))


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ({"gemini_attempts": "0"}, "prisyn_gemini_attempts '0' must be a whole number"),
        ({"concurrency": "2.5"}, "prisyn_concurrency '2.5' must be a whole number"),
        ({"gemini_timeout": "-3"}, r"prisyn_gemini_timeout '-3' must be a number"),
        ({"prices": ["gemini = cheap"]}, "is not 'model = input output'"),
    ],
)
def test_bad_numbers_name_the_setting(ini: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(options={}, ini=ini, env={}, rootdir=Path())


def test_one_attempt_and_one_call_at_a_time_are_allowed() -> None:
    settings = resolve(
        options={},
        ini={"gemini_attempts": "1", "concurrency": "1"},
        env={},
        rootdir=Path(),
    )

    assert (settings.gemini_attempts, settings.concurrency) == (1, 1)


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_regen_with_an_empty_list_is_refused(value: str) -> None:
    # An unset $PROFILES in CI must not mean "regenerate (and pay for) everything".
    with pytest.raises(ConfigError, match="names no profile"):
        resolve(options={"regen": value}, ini={}, env={}, rootdir=Path())
