"""Bad requests fail at set-up with a clean ``prisyn:`` message, no traceback."""

from __future__ import annotations

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"


def setup_error(pytester: pytest.Pytester, mark: str, *args: str) -> str:
    """Run one test under `mark`; assert it errors at set-up; return the output."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn({mark})
        def test_data(prisyn_dataset):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "ERROR at setup of test_data" in text
    assert "prisyn: " in text
    assert "Traceback" not in text
    assert "pytest_prisyn/" not in text, "traceback from the plugin's internals"
    return text


def test_unknown_marker_argument_names_it_and_the_accepted_ones(pytester):
    text = setup_error(pytester, f'"tech", {SIZES}, colour="red"')
    assert "'colour'" in text
    for name in ("profile", "n_users", "n_items", "n_interactions", "seed"):
        assert name in text.split("'colour'")[1]


def test_two_positional_arguments(pytester):
    text = setup_error(pytester, f'"tech", "fitness", {SIZES}')
    assert "positional" in text


def test_unknown_profile_lists_the_known_ones(pytester):
    text = setup_error(pytester, f'"nope", {SIZES}')
    assert "'nope'" in text
    for name in ("tech", "fitness", "movielens", "traveller"):
        assert name in text


def test_unknown_profile_in_a_list(pytester):
    text = setup_error(pytester, f'["tech", "nope"], {SIZES}')
    assert "'nope'" in text


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("n_users", "0"),
        ("n_users", "-5"),
        ("n_items", "0"),
        ("n_interactions", "0"),
        ("n_interactions", "-1"),
    ],
)
def test_zero_or_negative_sizes(pytester, argument, value):
    sizes = {"n_users": "20", "n_items": "50", "n_interactions": "300"}
    sizes[argument] = value
    arguments = ", ".join(f"{k}={v}" for k, v in sizes.items())
    text = setup_error(pytester, f'"tech", {arguments}')
    assert f"{argument}={value}" in text or f"{argument} must" in text


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("n_users", "20.5"),
        ("n_items", '"50"'),
        ("n_interactions", "300.0"),
        ("n_users", "True"),
        ("seed", '"abc"'),
    ],
)
def test_non_integer_sizes(pytester, argument, value):
    sizes = {"n_users": "20", "n_items": "50", "n_interactions": "300"}
    sizes[argument] = value
    arguments = ", ".join(f"{k}={v}" for k, v in sizes.items())
    text = setup_error(pytester, f'"tech", {arguments}')
    assert f"{argument} must be an integer" in text


def test_negative_seed(pytester):
    text = setup_error(pytester, f'"tech", {SIZES}, seed=-1')
    assert "seed" in text


def test_more_interactions_than_pairs_names_the_numbers(pytester):
    text = setup_error(pytester, '"tech", n_users=20, n_items=5, n_interactions=300')
    assert "300" in text
    assert "20" in text
    assert "5" in text
    assert "100" in text


def test_fewer_interactions_than_users(pytester):
    text = setup_error(pytester, '"tech", n_users=20, n_items=50, n_interactions=10')
    assert "n_interactions=10" in text
    assert "n_users=20" in text


def test_no_profile_given(pytester):
    text = setup_error(pytester, SIZES)
    assert "no profile" in text


def test_empty_profile_list(pytester):
    text = setup_error(pytester, f"[], {SIZES}")
    assert "empty" in text


@pytest.mark.parametrize("share", ["0", "-1", '"half"', "float('nan')", "True"])
def test_bad_share_in_a_mapping(pytester, share):
    text = setup_error(pytester, f'{{"tech": 1, "fitness": {share}}}, {SIZES}')
    assert "share of profile 'fitness'" in text


def test_bad_profile_type(pytester):
    text = setup_error(pytester, f"42, {SIZES}")
    assert "profile" in text


def test_bad_generation_argument(pytester):
    text = setup_error(pytester, f'"tech", {SIZES}, generation="poetry"')
    assert "'poetry'" in text
    assert "spec, rows" in text


def test_indirect_dict_without_profile_is_explained(pytester):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        @pytest.mark.parametrize(
            "prisyn_dataset", [{{"n_users": 25}}], indirect=True
        )
        def test_data(prisyn_dataset):
            assert prisyn_dataset["user_id"].nunique() == 25
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    if outcomes.get("passed") != 1:
        # Refusing is acceptable, but the message must not call the marker
        # argument 'n_users' an unknown profile.
        assert "unknown profile 'n_users'" not in result.stdout.str()


def test_engine_errors_are_clean_from_the_session_fixture(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def data(prisyn):
            return prisyn.dataset("nope", n_users=20, n_items=50, n_interactions=300)

        def test_data(data):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "unknown profile 'nope'" in text
    assert "Traceback" not in text


def test_gemini_backend_without_a_key_says_no_key_is_set(pytester):
    assert not (pytester.path / ".env").exists()
    text = setup_error(pytester, f'"tech", {SIZES}', "--prisyn-backend=gemini")
    assert "no API key is set" in text
    assert "GEMINI_API_KEY" in text


def test_gemini_key_in_dotenv_is_found(pytester):
    (pytester.path / ".env").write_text("GEMINI_API_KEY=sk-from-dotenv-456\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["prisyn: *key from GEMINI_API_KEY in .env*"])
    assert "sk-from-dotenv-456" not in result.stdout.str()


def test_engine_errors_in_a_users_own_fixture_show_no_plugin_internals(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def ratings(prisyn):
            return prisyn.dataset("nope", n_users=10, n_interactions=100)

        def test_uses(ratings):
            pass
        """
    )
    result = pytester.runpytest()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*return prisyn.dataset(*", "E *ProfileError: unknown profile 'nope'*"]
    )
    # One frame at the engine's door, none from deep inside it.
    text = result.stdout.str()
    assert "pytest_prisyn/engine.py" in text
    for internal in ("request.py", "profiles.py", "_plan", "def entry"):
        assert internal not in text
