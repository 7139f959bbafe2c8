"""Command-line options, ini keys and environment variables of pytest-prisyn."""

from __future__ import annotations

import re

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"
OPTIONS = (
    "--prisyn-backend",
    "--prisyn-model",
    "--prisyn-generation",
    "--prisyn-cache-dir",
    "--prisyn-offline",
    "--prisyn-regen",
)
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


def header(result: pytest.RunResult) -> str:
    """The single ``prisyn: `` line in the header block of a run."""
    block = result.outlines[: result.outlines.index("")]
    lines = [line for line in block if line.startswith("prisyn: ")]
    assert len(lines) == 1, result.outlines
    return lines[0]


def test_options_form_one_prisyn_group_in_help(pytester):
    result = pytester.runpytest("--help")
    assert result.ret == 0
    groups: dict[str, str] = {}
    heading = ""
    for line in result.outlines:
        if line and not line[0].isspace() and line.endswith(":"):
            heading = line
        groups[heading] = groups.get(heading, "") + line + "\n"
    holding = {h for h, text in groups.items() if "\n  --prisyn-" in text}
    assert len(holding) == 1, holding
    (heading,) = holding
    assert "prisyn" in heading
    for option in OPTIONS:
        assert option in groups[heading], f"{option} is not in the prisyn group"
    for ini in ("prisyn_backend", "prisyn_model", "prisyn_cache_dir"):
        assert ini in result.stdout.str()


def test_marker_is_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.prisyn(profile*"])
    pytester.makeini("[pytest]\nmarkers =\n")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        def test_strict(prisyn_dataset):
            pass
        """
    )
    pytester.runpytest("--strict-markers", "-p", "no:cacheprovider").assert_outcomes(
        passed=1
    )


@pytest.mark.parametrize("fixture", ["prisyn", "prisyn_dataset", "prisyn_catalog"])
def test_fixtures_have_docstrings(pytester, fixture):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest("--fixtures")
    text = result.stdout.str()
    match = re.search(rf"^{fixture}( \[session scope\])? -- .*\n(.*)$", text, re.M)
    assert match, f"{fixture} is not listed by --fixtures"
    docstring = match.group(2).strip()
    assert docstring
    assert "no docstring available" not in docstring


@pytest.mark.parametrize("backend", ["auto", "gemini", "simulate"])
def test_backend_option_is_shown_in_the_header(pytester, backend):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest(f"--prisyn-backend={backend}")
    assert header(result).startswith(f"prisyn: backend {backend}")


def test_backend_precedence_cli_then_env_then_ini(pytester, monkeypatch):
    pytester.makepyfile(NO_DATASET)
    pytester.makeini("[pytest]\nprisyn_backend = gemini\n")
    assert "backend gemini" in header(pytester.runpytest())
    monkeypatch.setenv("PRISYN_BACKEND", "simulate")
    assert "backend simulate" in header(pytester.runpytest())
    assert "backend auto" in header(pytester.runpytest("--prisyn-backend=auto"))


def test_env_backend_is_read_in_a_fresh_interpreter(pytester, monkeypatch):
    pytester.makepyfile(NO_DATASET)
    monkeypatch.setenv("PRISYN_BACKEND", "simulate")
    result = pytester.runpytest_subprocess()
    assert header(result).startswith("prisyn: backend simulate")


def test_model_precedence_cli_then_env_then_ini(pytester, monkeypatch):
    pytester.makepyfile(NO_DATASET)
    assert "model gemini-2.5-flash" in header(pytester.runpytest())
    pytester.makeini("[pytest]\nprisyn_model = from-ini\n")
    assert "model from-ini" in header(pytester.runpytest())
    monkeypatch.setenv("PRISYN_MODEL", "from-env")
    assert "model from-env" in header(pytester.runpytest())
    result = pytester.runpytest("--prisyn-model=from-cli")
    assert "model from-cli" in header(result)


def test_generation_option_is_shown_for_gemini(pytester):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest("--prisyn-backend=gemini", "--prisyn-generation=rows")
    assert "generation rows" in header(result)


def test_bad_backend_option_is_an_argparse_usage_error(pytester):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest("--prisyn-backend=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prisyn-backend*invalid choice*nope*"])


def test_bad_generation_option_is_an_argparse_usage_error(pytester):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest("--prisyn-generation=poetry")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--prisyn-generation*invalid choice*poetry*"])


def test_bad_backend_in_ini_is_a_usage_error(pytester):
    pytester.makepyfile(NO_DATASET)
    pytester.makeini("[pytest]\nprisyn_backend = bogus\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*bogus*auto, gemini, simulate*"])
    assert "Traceback" not in result.stderr.str()


def test_bad_backend_in_env_is_a_usage_error(pytester, monkeypatch):
    pytester.makepyfile(NO_DATASET)
    monkeypatch.setenv("PRISYN_BACKEND", "bogus")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bogus*auto, gemini, simulate*"])


def test_bad_generation_in_ini_is_a_usage_error(pytester):
    pytester.makepyfile(NO_DATASET)
    pytester.makeini("[pytest]\nprisyn_generation = poetry\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*poetry*spec, rows*"])


def test_default_cache_dir_is_dot_prisyn_under_rootdir(pytester):
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert header(result).endswith(f"cache {pytester.path / '.prisyn'}")
    assert (pytester.path / ".prisyn").is_dir()
    assert not list(pytester.path.glob(".pytest_cache/**/*prisyn*"))


def test_cache_dir_is_not_created_by_a_run_without_datasets(pytester):
    pytester.makepyfile(NO_DATASET)
    pytester.runpytest().assert_outcomes(passed=1)
    assert not (pytester.path / ".prisyn").exists()


def test_cache_dir_option_relative_to_rootdir_not_cwd(pytester, monkeypatch):
    pytester.makeini("[pytest]\n")
    tests = pytester.mkpydir("suite")
    (tests / "test_data.py").write_text(ONE_DATASET)
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest(
        "--prisyn-cache-dir=mycache", "-p", "no:cacheprovider", str(tests)
    )
    result.assert_outcomes(passed=1)
    assert (pytester.path / "mycache").is_dir()
    assert not (elsewhere / "mycache").exists()
    assert header(result).endswith(f"cache {pytester.path / 'mycache'}")


def test_cache_dir_precedence_cli_then_env_then_ini(pytester, monkeypatch):
    pytester.makepyfile(ONE_DATASET)
    pytester.makeini("[pytest]\nprisyn_cache_dir = from-ini\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (pytester.path / "from-ini").is_dir()

    monkeypatch.setenv("PRISYN_CACHE_DIR", "from-env")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (pytester.path / "from-env").is_dir()

    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-cache-dir=cli")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "cli").is_dir()
    assert not (pytester.path / ".prisyn").exists()


def test_absolute_cache_dir_is_used_as_given(pytester, tmp_path_factory):
    target = tmp_path_factory.mktemp("absolute") / "cache"
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--prisyn-cache-dir={target}"
    )
    result.assert_outcomes(passed=1)
    assert target.is_dir()
    assert header(result).endswith(f"cache {target}")


def test_env_cache_dir_is_read_in_a_fresh_interpreter(pytester, monkeypatch):
    pytester.makepyfile(ONE_DATASET)
    monkeypatch.setenv("PRISYN_CACHE_DIR", "envcache")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "envcache").is_dir()


def test_offline_ini_flag_is_shown_in_the_header(pytester):
    pytester.makepyfile(NO_DATASET)
    pytester.makeini("[pytest]\nprisyn_offline = true\n")
    assert "offline" in header(pytester.runpytest("--prisyn-backend=simulate"))


def test_regen_option_forms_are_shown_in_the_header(pytester):
    pytester.makepyfile(NO_DATASET)
    assert "regen all" in header(pytester.runpytest("--prisyn-regen"))
    result = pytester.runpytest("--prisyn-regen=tech,fitness")
    assert "regen fitness,tech" in header(result)


def test_bare_regen_before_a_path_does_not_swallow_the_path(pytester):
    pytester.makepyfile(test_one=NO_DATASET, test_two=NO_DATASET)
    result = pytester.runpytest("--prisyn-regen", "test_one.py")
    # Either the path selects the tests, or the run refuses the unknown profile
    # 'test_one.py'; silently running every test and regenerating nothing is wrong.
    if result.ret != pytest.ExitCode.USAGE_ERROR:
        result.assert_outcomes(passed=1)


def test_regen_of_an_unknown_profile_is_not_silently_ignored(pytester):
    pytester.makepyfile(ONE_DATASET)
    result = pytester.runpytest("-p", "no:cacheprovider", "--prisyn-regen=fitnes")
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        result.stderr.fnmatch_lines(["*fitnes*"])
        return
    mentions = [line for line in result.outlines if "fitnes" in line]
    assert len(mentions) > 1, "only the header mentions the unknown profile"


def test_blank_model_is_not_used_as_a_model_id(pytester):
    pytester.makepyfile(NO_DATASET)
    result = pytester.runpytest("--prisyn-model= ")
    if result.ret != pytest.ExitCode.USAGE_ERROR:
        assert "model gemini-2.5-flash" in header(result)


def test_bad_gemini_timeout_in_ini_is_a_usage_error(pytester):
    pytester.makepyfile(NO_DATASET)
    pytester.makeini("[pytest]\nprisyn_gemini_timeout = soon\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*prisyn_gemini_timeout*soon*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--prisyn-concurrency=0", "prisyn_concurrency '0' must be a whole number"),
        ("--prisyn-budget=lots", "prisyn budget 'lots' is not understood"),
        ("--prisyn-max-age=soon", "prisyn max age 'soon' is not a duration"),
    ],
)
def test_gemini_limits_are_checked_at_start_up(pytester, option, message):
    pytester.makepyfile("def test_nothing():\n    pass\n")

    result = pytester.runpytest(option)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_gemini_limits_accept_good_values(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")

    result = pytester.runpytest("--prisyn-concurrency=8", "--prisyn-budget=500000,$2")

    result.assert_outcomes(passed=1)
