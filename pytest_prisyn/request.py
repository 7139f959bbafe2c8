"""What a test asks for, in canonical form, and the fingerprint that keys the cache.

The fingerprint is the sha256 of `DatasetRequest.canonical_json()`: sorted keys,
no whitespace, every value that changes the data included (the profiles'
definitions, sizes, seed, backend, model and generation mode for Gemini, and
`FORMAT_VERSION`). Anything not in it cannot change the data.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pytest_prisyn.errors import RequestError
from pytest_prisyn.profiles import check_name

# Bump whenever a change to a generator or to the stored layout would give a
# request different data: old entries then stop matching instead of being
# served as if they were current. 2: the vectorised sampler and timeline,
# activity bent below its cap, small requests calibrated on twin draws.
FORMAT_VERSION = 2

Backend = Literal["simulate", "gemini"]
Generation = Literal["spec", "rows"]
GENERATIONS: tuple[Generation, ...] = ("spec", "rows")

DATASET_ARGUMENTS = (
    "profile",
    "n_users",
    "n_items",
    "n_interactions",
    "seed",
    "generation",
)
# Read by the federated fixtures (prisyn_clients, prisyn_fedprox_synthetic);
# they never change the dataset, so they are not part of its request.
FEDERATED_ARGUMENTS = (
    "clients",
    "partition",
    "alpha",
    "beta",
    "devices",
    "classes_per_client",
    "min_client_interactions",
    "test_per_user",
    "max_samples",
)
ARGUMENTS = DATASET_ARGUMENTS + FEDERATED_ARGUMENTS
DEFAULTS: dict[str, Any] = {
    "n_users": 100,
    "n_items": 300,
    "n_interactions": 3000,
    "seed": 0,
}
MAX_USERS = 10_000_000
MAX_ITEMS = 10_000_000
MAX_INTERACTIONS = 1_000_000_000


class DatasetRequest(BaseModel):
    """One dataset, described completely enough to regenerate it."""

    model_config = ConfigDict(frozen=True)

    population: tuple[tuple[str, float], ...]
    profiles: tuple[dict[str, Any], ...]
    n_users: int
    n_items: int
    n_interactions: int
    seed: int
    backend: Backend
    model: str | None = None
    generation: Generation | None = None
    format_version: int = FORMAT_VERSION

    def canonical_json(self) -> str:
        """The documented canonical form: JSON with sorted keys, no spaces."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        )

    def fingerprint(self) -> str:
        """The sha256 hex digest of the canonical form: the cache key."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def profile_names(self) -> list[str]:
        """The profiles of the population, in canonical order."""
        return [name for name, _ in self.population]

    def label(self) -> str:
        """A short human-readable name, e.g. ``tech 200u/5000i seed=7``."""
        mix = "+".join(self.profile_names())
        return (
            f"{mix} {self.n_users}u/{self.n_items}it/{self.n_interactions}r "
            f"seed={self.seed}"
        )


def check_arguments(
    positional: Sequence[Any],
    keywords: Mapping[str, Any],
    *,
    accepted: Sequence[str] = ARGUMENTS,
    what: str = "prisyn marker argument",
) -> dict[str, Any]:
    """Validate ``prisyn`` marker arguments; return them as keywords.

    `accepted` and `what` let a narrower caller (a dataset request) name its
    own arguments in the error.
    """
    if len(positional) > 1:
        raise RequestError(
            f"prisyn marker takes at most one positional argument (the profile), "
            f"got {len(positional)}: {list(positional)!r}"
        )
    arguments = dict(keywords)
    if positional:
        if "profile" in arguments:
            raise RequestError("prisyn marker got 'profile' both by position and name")
        arguments["profile"] = positional[0]
    unknown = sorted(set(arguments) - set(ARGUMENTS))
    if unknown:
        raise RequestError(
            f"unknown {what}(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted)}"
        )
    return arguments


def parse_population(profile: object) -> tuple[tuple[str, float], ...]:
    """Turn a profile argument into (name, share of users) pairs, sorted by name.

    Accepts a name, a list of names (users split evenly) or a mapping of name
    to share (shares are normalised, so weights work too).
    """
    if profile is None:
        raise RequestError(
            "no profile given: use @pytest.mark.prisyn(profile='tech') or "
            "parametrize prisyn_dataset indirectly with profile names"
        )
    if isinstance(profile, str):
        return ((check_name(profile), 1.0),)
    if isinstance(profile, Mapping):
        weights = {
            check_name(name): _share(name, share) for name, share in profile.items()
        }
    elif isinstance(profile, Sequence):
        names = [check_name(name) for name in profile]
        if len(set(names)) != len(names):
            raise RequestError(f"profile list {names!r} names a profile twice")
        weights = dict.fromkeys(names, 1.0)
    else:
        raise RequestError(
            f"profile must be a name, a list of names or a mapping name -> share, "
            f"got {type(profile).__name__} {profile!r}"
        )
    if not weights:
        raise RequestError("profile list is empty; name at least one profile")
    total = sum(weights.values())
    return tuple((name, weights[name] / total) for name in sorted(weights))


def _share(name: str, share: object) -> float:
    if (
        isinstance(share, bool)
        or not isinstance(share, numbers.Real)
        or not math.isfinite(share)
        or share <= 0
    ):
        raise RequestError(
            f"share of profile {name!r} must be a positive number, got {share!r}"
        )
    return float(share)


def check_sizes(
    n_users: object, n_items: object, n_interactions: object, seed: object
) -> tuple[int, int, int, int]:
    """Validate sizes and seed; raise naming the bad value and the allowed range."""
    users = _integer("n_users", n_users, 1, MAX_USERS)
    items = _integer("n_items", n_items, 1, MAX_ITEMS)
    interactions = _integer("n_interactions", n_interactions, 1, MAX_INTERACTIONS)
    chosen_seed = _integer("seed", seed, 0, 2**63 - 1)
    if interactions < users:
        raise RequestError(
            f"n_interactions={interactions} is less than n_users={users}; every "
            "user needs at least one interaction"
        )
    if interactions > users * items:
        raise RequestError(
            f"n_interactions={interactions} is more than n_users x n_items = "
            f"{users} x {items} = {users * items}, the most distinct "
            "(user, item) pairs there are"
        )
    return users, items, interactions, chosen_seed


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(
            f"{name} must be an integer from {low} to {high}, got {value!r}"
        )
    value = int(value)
    if not low <= value <= high:
        raise RequestError(f"{name}={value} is out of range; accepted: {low} to {high}")
    return value


def check_generation(value: object) -> Generation:
    """Validate a generation mode name."""
    if value not in GENERATIONS:
        raise RequestError(
            f"generation={value!r} is not a generation mode; accepted: "
            f"{', '.join(GENERATIONS)}"
        )
    return value  # type: ignore[return-value,unused-ignore]
