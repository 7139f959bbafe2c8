"""Requests: argument checks, population forms, the canonical fingerprint."""

from __future__ import annotations

import pytest

from pytest_prisyn.errors import ProfileError, RequestError
from pytest_prisyn.profiles import ProfileRegistry
from pytest_prisyn.request import (
    FORMAT_VERSION,
    DatasetRequest,
    check_arguments,
    check_sizes,
    parse_population,
)


def make(**changes: object) -> DatasetRequest:
    fields: dict[str, object] = {
        "population": (("tech", 1.0),),
        "profiles": (ProfileRegistry().get("tech").identity(),),
        "n_users": 10,
        "n_items": 20,
        "n_interactions": 100,
        "seed": 0,
        "backend": "simulate",
    }
    fields.update(changes)
    return DatasetRequest.model_validate(fields)


def test_fingerprint_is_stable_and_documented() -> None:
    request = make()

    assert request.fingerprint() == make().fingerprint()
    assert len(request.fingerprint()) == 64
    assert request.canonical_json().startswith('{"backend":"simulate"')
    assert f'"format_version":{FORMAT_VERSION}' in request.canonical_json()


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"n_users": 11},
        {"n_items": 21},
        {"n_interactions": 101},
        {"backend": "gemini", "model": "m", "generation": "spec"},
        {"format_version": FORMAT_VERSION + 1},
        {"population": (("tech", 0.5), ("gamer", 0.5))},
    ],
)
def test_everything_that_changes_data_changes_the_fingerprint(change: dict) -> None:
    assert make(**change).fingerprint() != make().fingerprint()


def test_profile_definition_is_part_of_the_fingerprint() -> None:
    other = dict(make().profiles[0], description="changed")

    assert make(profiles=(other,)).fingerprint() != make().fingerprint()


def test_population_forms() -> None:
    assert parse_population("tech") == (("tech", 1.0),)
    assert parse_population(["tech", "gamer"]) == (("gamer", 0.5), ("tech", 0.5))
    assert parse_population({"tech": 3, "gamer": 1}) == (
        ("gamer", 0.25),
        ("tech", 0.75),
    )


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (None, "no profile given"),
        ([], "empty"),
        (["tech", "tech"], "twice"),
        ({"tech": 0}, "positive number"),
        ({"tech": float("nan")}, "positive number"),
        (42, "must be a name"),
        ("../etc", "not valid"),
    ],
)
def test_bad_populations_name_the_problem(profile: object, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_population(profile)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ((0, 10, 10, 0), "n_users=0 is out of range"),
        ((-5, 10, 10, 0), "n_users=-5"),
        ((10, 10, 5, 0), "less than n_users=10"),
        ((3, 4, 13, 0), "3 x 4 = 12"),
        ((10, 10, 50.5, 0), "n_interactions must be an integer"),
        ((10, 10, 50, -1), "seed=-1"),
        ((True, 10, 50, 0), "n_users must be an integer"),
    ],
)
def test_bad_sizes_name_the_value(sizes: tuple, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        check_sizes(*sizes)


def test_unknown_marker_argument_lists_the_accepted_ones() -> None:
    with pytest.raises(RequestError, match=r"'colour'.*accepted: profile, n_users"):
        check_arguments((), {"colour": "red"})


def test_positional_profile() -> None:
    assert check_arguments(("tech",), {"seed": 1}) == {"profile": "tech", "seed": 1}


def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(ProfileError, match="known profiles: bookworm, cinephile"):
        ProfileRegistry().get("nope")
