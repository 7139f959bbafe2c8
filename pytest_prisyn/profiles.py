"""Behaviour profiles: the built-in personas and the ones users declare.

A profile is a description (what a person or Gemini reads) plus, usually, a
behaviour spec (what the simulator reads). Users add profiles in
``pyproject.toml`` under ``[tool.prisyn.profiles.<name>]``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_prisyn.errors import ProfileError
from pytest_prisyn.spec import BehaviorSpec, build_spec

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Profile:
    """A named population of users: its description and its behaviour spec."""

    name: str
    description: str
    spec: BehaviorSpec | None
    source: str = "built-in"

    def identity(self) -> dict[str, Any]:
        """What defines this profile's data, for the request fingerprint."""
        return {
            "name": self.name,
            "description": self.description,
            "spec": None if self.spec is None else self.spec.model_dump(mode="json"),
        }


def _spec(
    categories: dict[str, float], stars: list[float], **fields: Any
) -> BehaviorSpec:
    return build_spec(
        {"categories": categories, "star_shares": stars, **fields}, owner="built-in"
    )


BUILTIN: dict[str, Profile] = {
    profile.name: profile
    for profile in [
        Profile(
            "tech",
            "Early adopters who buy and review phones, laptops, audio gear and "
            "smart-home devices; generous with five stars but harsh on flops.",
            _spec(
                {
                    "smartphones": 22,
                    "laptops": 18,
                    "audio": 14,
                    "smart-home": 12,
                    "software": 10,
                    "cameras": 8,
                    "gaming-hardware": 8,
                    "books": 4,
                    "fitness-gear": 4,
                },
                [0.07, 0.06, 0.12, 0.30, 0.45],
                favourite_share=0.45,
                session_size=6,
                session_gap_seconds=240,
                popularity_sigma=1.4,
            ),
        ),
        Profile(
            "fitness",
            "Gym regulars and runners buying training gear, sportswear and "
            "supplements, with some interest in healthy food and workout music.",
            _spec(
                {
                    "fitness-gear": 26,
                    "sportswear": 20,
                    "supplements": 18,
                    "healthy-food": 12,
                    "outdoor": 12,
                    "audio": 6,
                    "books": 6,
                },
                [0.05, 0.06, 0.13, 0.32, 0.44],
                favourite_share=0.5,
                session_size=5,
                session_gap_seconds=180,
            ),
        ),
        Profile(
            "foodie",
            "Home cooks and restaurant hunters who rate restaurants, cookware, "
            "groceries, cookbooks and wine, and are picky about taste.",
            _spec(
                {
                    "restaurants": 28,
                    "cookware": 20,
                    "groceries": 16,
                    "cookbooks": 14,
                    "wine": 10,
                    "healthy-food": 6,
                    "tours": 6,
                },
                [0.06, 0.08, 0.18, 0.33, 0.35],
                favourite_share=0.45,
                taste_weight=0.7,
                session_size=4,
            ),
        ),
        Profile(
            "bookworm",
            "Heavy readers of fiction and fantasy who also pick up biographies, "
            "non-fiction and audiobooks; ratings spread like a book club's.",
            _spec(
                {
                    "fiction": 30,
                    "fantasy": 18,
                    "non-fiction": 18,
                    "biography": 10,
                    "audiobooks": 10,
                    "cookbooks": 6,
                    "drama": 8,
                },
                [0.03, 0.08, 0.22, 0.38, 0.29],
                favourite_share=0.5,
                activity_sigma=1.5,
                session_size=3,
                span_days=365,
            ),
        ),
        Profile(
            "gamer",
            "Players of console and PC games who buy gaming hardware, watch "
            "sci-fi and listen to soundtracks; loud in both directions.",
            _spec(
                {
                    "video-games": 34,
                    "gaming-hardware": 22,
                    "board-games": 10,
                    "sci-fi": 10,
                    "electronic": 8,
                    "animation": 8,
                    "software": 8,
                },
                [0.09, 0.08, 0.15, 0.30, 0.38],
                favourite_share=0.55,
                user_bias_sd=0.7,
                session_size=8,
                session_gap_seconds=60,
            ),
        ),
        Profile(
            "cinephile",
            "Film lovers who rate many movies across drama, thrillers, "
            "documentaries and classics, and give five stars sparingly.",
            _spec(
                {
                    "drama": 22,
                    "comedy": 16,
                    "thriller": 14,
                    "sci-fi": 12,
                    "documentary": 12,
                    "animation": 8,
                    "horror": 8,
                    "romance": 8,
                },
                [0.06, 0.12, 0.28, 0.34, 0.20],
                favourite_share=0.4,
                activity_sigma=1.4,
                session_size=20,
                session_gap_seconds=30,
                same_second_share=0.45,
            ),
        ),
        Profile(
            "traveller",
            "Frequent travellers rating hotels, flights, tours and luggage, with "
            "guidebooks, cameras and restaurants on the side.",
            _spec(
                {
                    "hotels": 24,
                    "flights": 18,
                    "tours": 16,
                    "luggage": 10,
                    "guidebooks": 10,
                    "restaurants": 10,
                    "cameras": 6,
                    "outdoor": 6,
                },
                [0.06, 0.07, 0.14, 0.33, 0.40],
                favourite_share=0.45,
                session_size=3,
                session_gap_seconds=600,
                span_days=365,
            ),
        ),
        Profile(
            "music",
            "Listeners who rate albums and tracks across rock, pop, hip-hop, "
            "electronic and jazz, plus concerts and audio gear.",
            _spec(
                {
                    "rock": 20,
                    "pop": 18,
                    "hip-hop": 14,
                    "electronic": 14,
                    "jazz": 10,
                    "classical": 8,
                    "concerts": 8,
                    "audio": 8,
                },
                [0.04, 0.07, 0.20, 0.35, 0.34],
                favourite_share=0.45,
                session_size=15,
                session_gap_seconds=200,
            ),
        ),
        Profile(
            "movielens",
            "A MovieLens-100K-like population of movie raters: 18 genres, 1-5 "
            "stars peaking at 4, at least 20 ratings per user, bulk rating sessions.",
            _spec(
                # Genre weights: ratings per genre in MovieLens 100K (GroupLens).
                {
                    "drama": 39895,
                    "comedy": 29832,
                    "action": 25589,
                    "thriller": 21872,
                    "romance": 19461,
                    "adventure": 13753,
                    "sci-fi": 12730,
                    "war": 9398,
                    "crime": 8055,
                    "children": 7182,
                    "horror": 5317,
                    "mystery": 5245,
                    "musical": 4954,
                    "animation": 3605,
                    "western": 1854,
                    "film-noir": 1733,
                    "fantasy": 1352,
                    "documentary": 758,
                },
                # Star shares of MovieLens 100K, see shared REFERENCE.md section 1.
                [0.061, 0.114, 0.271, 0.342, 0.212],
                favourite_share=0.2,
                min_interactions=20,
                activity_sigma=1.25,
                popularity_sigma=2.6,
                quality_popularity_corr=0.82,
                session_size=150,
                session_gap_seconds=25,
                same_second_share=0.5,
                span_days=210,
            ),
        ),
    ]
}


def load_user_profiles(pyproject: Path | None) -> dict[str, Profile]:
    """Read ``[tool.prisyn.profiles.*]`` from a ``pyproject.toml``, if there is one."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ProfileError(f"cannot read profiles from {pyproject}: {error}") from None
    section = document.get("tool", {}).get("prisyn", {})
    unknown = sorted(set(section) - {"profiles"})
    if unknown:
        raise ProfileError(
            f"[tool.prisyn] in {pyproject} has unknown key(s) {', '.join(unknown)}; "
            "accepted: profiles (settings go in [tool.pytest.ini_options] as "
            "prisyn_* keys)"
        )
    tables = section.get("profiles", {})
    if not isinstance(tables, Mapping):
        raise ProfileError(f"[tool.prisyn.profiles] in {pyproject} must be a table")
    return {
        name: _user_profile(name, table, source=str(pyproject))
        for name, table in tables.items()
    }


def _user_profile(name: str, table: Any, *, source: str) -> Profile:
    check_name(name)
    if not isinstance(table, Mapping):
        raise ProfileError(
            f"[tool.prisyn.profiles.{name}] in {source} must be a table with a "
            "'description'"
        )
    fields = dict(table)
    description = fields.pop("description", None)
    if not isinstance(description, str) or not description.strip():
        raise ProfileError(
            f"profile {name!r} in {source} needs a non-empty 'description' string"
        )
    unknown = sorted(set(fields) - set(BehaviorSpec.model_fields))
    if unknown:
        raise ProfileError(
            f"profile {name!r} in {source} has unknown field(s) "
            f"{', '.join(unknown)}; accepted: description, "
            f"{', '.join(BehaviorSpec.model_fields)}"
        )
    spec = build_spec(fields, owner=name) if fields else None
    return Profile(name, description.strip(), spec, source=source)


def check_name(name: object) -> str:
    """Return a valid profile name, or raise naming the rule it breaks."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ProfileError(
            f"profile name {name!r} is not valid: use 1-40 lower-case letters, "
            "digits, '-' or '_', starting with a letter"
        )
    return name


class ProfileRegistry:
    """Built-in profiles plus the user's own; user profiles may replace built-ins."""

    def __init__(self, user_profiles: Mapping[str, Profile] | None = None) -> None:
        self._profiles = {**BUILTIN, **(user_profiles or {})}

    def names(self) -> list[str]:
        """Every known profile name, sorted."""
        return sorted(self._profiles)

    def get(self, name: object) -> Profile:
        """The profile called `name`; the error lists the known names."""
        if isinstance(name, str) and name in self._profiles:
            return self._profiles[name]
        raise ProfileError(
            f"unknown profile {name!r}; known profiles: {', '.join(self.names())}"
            " (add your own under [tool.prisyn.profiles.<name>] in pyproject.toml)"
        )
