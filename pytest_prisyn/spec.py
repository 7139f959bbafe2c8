"""The behaviour spec: what a profile's users do, as numbers the simulator reads.

The same schema is what Gemini fills in for a profile that only has a description,
so it avoids the constructs the Gemini API refuses: no dict fields, no recursion,
lists of small objects instead of mappings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_prisyn.errors import SpecError

CATEGORY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_CATEGORIES = 40
MIN_STAR_SHARE = 0.005
DEGENERATE_STAR_SHARE = 0.6


class CategoryWeight(BaseModel):
    """One item category and how much of a profile's attention it gets."""

    model_config = ConfigDict(frozen=True)

    category: str = Field(description="lower-case slug, e.g. 'smartphones'")
    weight: float = Field(gt=0, description="relative share of interactions")

    @field_validator("category")
    @classmethod
    def _slug(cls, value: str) -> str:
        slug = slugify(value)
        if not CATEGORY_PATTERN.match(slug):
            raise ValueError(
                f"category {value!r} is not a slug of 1-40 letters, digits or '-'"
            )
        return slug


class RatingScale(BaseModel):
    """The values a rating may take: low to high in equal steps."""

    model_config = ConfigDict(frozen=True)

    low: float = Field(default=1.0, description="lowest rating")
    high: float = Field(default=5.0, description="highest rating")
    step: float = Field(default=1.0, gt=0, description="distance between ratings")

    def values(self) -> list[float]:
        """Every allowed rating, low to high."""
        count = round((self.high - self.low) / self.step) + 1
        return [round(self.low + i * self.step, 6) for i in range(count)]

    def check(self) -> None:
        """Raise `SpecError` unless the scale has 2 to 21 evenly spaced values."""
        if self.high <= self.low:
            raise SpecError(f"rating scale high={self.high} must exceed low={self.low}")
        steps = (self.high - self.low) / self.step
        if abs(steps - round(steps)) > 1e-9 or not 1 <= round(steps) <= 20:
            raise SpecError(
                f"rating scale {self.low}..{self.high} step {self.step} must have "
                "2 to 21 evenly spaced values"
            )


class BehaviorSpec(BaseModel):
    """How a profile's users choose, rate and time their interactions."""

    model_config = ConfigDict(frozen=True)

    categories: list[CategoryWeight] = Field(
        description="the categories this profile's users interact with, and weights"
    )
    rating_scale: RatingScale = Field(default_factory=RatingScale)
    star_shares: list[float] = Field(
        description="share of ratings on each scale value, lowest first"
    )
    favourite_share: float = Field(
        default=0.5,
        ge=0.05,
        le=0.95,
        description="typical share of a user's interactions in their top category",
    )
    min_interactions: int = Field(
        default=5, ge=1, description="fewest interactions a user has"
    )
    activity_sigma: float = Field(
        default=1.3,
        ge=0.1,
        le=3.0,
        description="log-normal spread of user activity above the minimum",
    )
    popularity_sigma: float = Field(
        default=1.2,
        ge=0.1,
        le=3.0,
        description="log-normal spread of item popularity",
    )
    quality_popularity_corr: float = Field(
        default=0.5,
        ge=-1.0,
        le=1.0,
        description="correlation between an item's popularity and its quality",
    )
    taste_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=3.0,
        description="how much more a user likes items of the categories they favour",
    )
    user_bias_sd: float = Field(
        default=0.5,
        ge=0.0,
        le=3.0,
        description="spread of users' personal rating leniency",
    )
    session_size: float = Field(
        default=12.0,
        ge=1.0,
        description="mean number of interactions in one session",
    )
    session_gap_seconds: float = Field(
        default=90.0,
        gt=0.0,
        description="mean gap between two interactions inside a session, seconds",
    )
    same_second_share: float = Field(
        default=0.3,
        ge=0.0,
        le=0.95,
        description="share of in-session interactions in the same second as the last",
    )
    span_days: int = Field(
        default=180, ge=1, le=3650, description="length of the timeline in days"
    )

    def mix(self) -> dict[str, float]:
        """The declared category mix, normalised to shares that sum to one."""
        total = sum(entry.weight for entry in self.categories)
        return {entry.category: entry.weight / total for entry in self.categories}

    def star_probabilities(self) -> list[float]:
        """`star_shares` normalised to sum to one."""
        total = sum(self.star_shares)
        return [share / total for share in self.star_shares]


def slugify(name: str) -> str:
    """Turn a category name into the slug the data uses."""
    return re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")


def build_spec(fields: Mapping[str, Any], *, owner: str) -> BehaviorSpec:
    """Build and validate a spec from loose fields (TOML tables, Gemini JSON)."""
    data = dict(fields)
    categories = data.get("categories")
    if isinstance(categories, Mapping):
        data["categories"] = [
            {"category": name, "weight": weight} for name, weight in categories.items()
        ]
    try:
        spec = BehaviorSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise SpecError(f"behaviour spec of {owner!r} is invalid: {problems}") from None
    return validate_spec(spec, owner=owner)


def validate_spec(spec: BehaviorSpec, *, owner: str) -> BehaviorSpec:
    """Check a spec for degenerate values; repair what can be repaired safely.

    Repairs: duplicate categories are merged, a category with almost all the
    weight is capped so users keep some breadth, and star shares that put
    nothing on some ratings get a small floor. What cannot be repaired (no
    categories, a star list of the wrong length, no variance at all) raises.
    """
    spec.rating_scale.check()
    merged = _merge_categories(spec.categories, owner=owner)
    stars = _repair_stars(spec.star_shares, spec.rating_scale.values(), owner=owner)
    return spec.model_copy(update={"categories": merged, "star_shares": stars})


def _merge_categories(
    categories: Sequence[CategoryWeight], *, owner: str
) -> list[CategoryWeight]:
    weights: dict[str, float] = {}
    for entry in categories:
        weights[entry.category] = weights.get(entry.category, 0.0) + entry.weight
    if len(weights) < 2:
        raise SpecError(
            f"behaviour spec of {owner!r} needs at least 2 categories, "
            f"got {sorted(weights)}"
        )
    if len(weights) > MAX_CATEGORIES:
        raise SpecError(
            f"behaviour spec of {owner!r} has {len(weights)} categories; "
            f"at most {MAX_CATEGORIES} are accepted"
        )
    total = sum(weights.values())
    shares = {name: weight / total for name, weight in weights.items()}
    top = max(shares, key=lambda name: shares[name])
    if shares[top] > 0.8:
        # One category with everything is the classic giveaway of fake personas;
        # real users with a strong favourite still spend a fifth elsewhere.
        rest = 1.0 - shares[top]
        scale = 0.2 / rest if rest > 0 else 0.0
        shares = {
            name: 0.8 if name == top else share * scale
            for name, share in shares.items()
        }
    return [
        CategoryWeight(category=name, weight=round(share, 6))
        for name, share in shares.items()
        if share > 0
    ]


def _repair_stars(
    shares: Sequence[float], values: Sequence[float], *, owner: str
) -> list[float]:
    if len(shares) != len(values):
        raise SpecError(
            f"behaviour spec of {owner!r} gives {len(shares)} star shares for a "
            f"scale of {len(values)} values {list(values)}"
        )
    if any(not math.isfinite(share) or share < 0 for share in shares):
        raise SpecError(
            f"behaviour spec of {owner!r} has star shares {list(shares)}; "
            "each must be a finite number >= 0"
        )
    total = sum(shares)
    if total <= 0:
        raise SpecError(f"behaviour spec of {owner!r} has star shares that sum to 0")
    if max(shares) / total >= 0.99:
        raise SpecError(
            f"behaviour spec of {owner!r} puts all ratings on one value "
            f"({list(shares)}): no rating variance at all; give every value on the "
            "scale some share"
        )
    floored = [max(share / total, MIN_STAR_SHARE) for share in shares]
    total = sum(floored)
    return [round(share / total, 6) for share in floored]
