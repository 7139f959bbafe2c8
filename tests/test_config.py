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
