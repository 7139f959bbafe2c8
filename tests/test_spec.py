"""Behaviour specs: validation and repair of degenerate ones (e.g. from Gemini)."""

from __future__ import annotations

import pytest

from pytest_prisyn.errors import SpecError
from pytest_prisyn.spec import build_spec

BASE = {"categories": {"a": 1, "b": 1}, "star_shares": [1, 1, 1, 1, 1]}


def spec(**changes: object):
    return build_spec({**BASE, **changes}, owner="p")


def test_weights_normalise_and_names_become_slugs() -> None:
    built = spec(categories={"Sci Fi": 3, "drama": 1})

    assert built.mix() == {"sci-fi": 0.75, "drama": 0.25}


def test_duplicate_categories_merge() -> None:
    built = build_spec(
        {
            "categories": [
                {"category": "Books", "weight": 1},
                {"category": "books", "weight": 1},
                {"category": "music", "weight": 2},
            ],
            "star_shares": [1] * 5,
        },
        owner="p",
    )

    assert built.mix() == {"books": 0.5, "music": 0.5}


def test_one_category_with_everything_is_capped_so_users_stay_broad() -> None:
    built = spec(categories={"a": 99, "b": 1})

    assert built.mix()["a"] == pytest.approx(0.8)
    assert built.mix()["b"] == pytest.approx(0.2)


def test_empty_star_levels_get_a_floor() -> None:
    built = spec(star_shares=[0, 0, 0, 1, 2])

    assert min(built.star_shares) > 0
    assert sum(built.star_shares) == pytest.approx(1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"categories": {"a": 1}}, "at least 2 categories"),
        ({"star_shares": [1, 1, 1]}, "3 star shares for a scale of 5 values"),
        ({"star_shares": [0, 0, 0, 0, 0]}, "sum to 0"),
        ({"star_shares": [1, -1, 1, 1, 1]}, "finite number >= 0"),
        ({"favourite_share": 1.5}, "favourite_share"),
        ({"rating_scale": {"low": 5, "high": 1, "step": 1}}, "must exceed"),
        ({"rating_scale": {"low": 1, "high": 5, "step": 0.3}}, "evenly spaced"),
        ({"star_shares": [0, 0, 1, 0, 0]}, "no rating variance"),
        ({"categories": {"a!": 1, "": 1}}, "not a slug"),
    ],
)
def test_unrepairable_specs_are_rejected_naming_the_problem(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        spec(**changes)
