"""Realism of the simulator, measured against MovieLens 100K and the persona rules.

Run: python benchmarks/realism.py [--seeds 3]

Prints one table for the `movielens` reference profile asked for at MovieLens-100K
size (943 users, 1,682 items, 100,000 interactions) and one line per built-in persona.
Exits non-zero when a target is missed, so it can gate a change to the simulator.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.quality import MOVIELENS_100K, report, total_variation
from pytest_prisyn.simulate import Simulator

SPECS = {name: profile.spec for name, profile in BUILTIN.items() if profile.spec}
PERSONAS = [name for name in sorted(SPECS) if name != "movielens"]


def movielens_rows(seed: int) -> list[tuple[str, float, str, bool]]:
    """(measure, value, target, met) for one seed of the reference profile."""
    sim = Simulator(
        population=[("movielens", 1.0)],
        specs=SPECS,
        n_users=943,
        n_items=1682,
        n_interactions=100_000,
        seed=seed,
    )
    result = report(sim.frame(), catalog=sim.catalog())
    ref = MOVIELENS_100K
    tvd = total_variation(result.ratings.shares, ref.star_shares)
    per_user = result.shape.per_user
    second = result.second_order
    top20 = result.popularity.top_20pct_share
    assert ref.rating_mean is not None
    return [
        ("star histogram TVD", tvd, "<= 0.05", tvd <= 0.05),
        (
            "rating mean",
            result.ratings.mean,
            "3.53 +- 0.05",
            abs(result.ratings.mean - ref.rating_mean) <= 0.05,
        ),
        (
            "item Gini",
            result.popularity.item_gini,
            "0.63 +- 0.05",
            abs(result.popularity.item_gini - 0.63) <= 0.05,
        ),
        ("top-20% items share", top20, "0.647 +- 0.05", abs(top20 - 0.647) <= 0.05),
        ("min per user", per_user.min, ">= 20", per_user.min >= 20),
        (
            "median per user",
            per_user.median,
            "65 +- 25%",
            abs(per_user.median - 65) <= 0.25 * 65,
        ),
        (
            "p90 per user",
            per_user.p90,
            "244 +- 25%",
            abs(per_user.p90 - 244) <= 0.25 * 244,
        ),
        (
            "Spearman(pop, mean rating)",
            second.spearman_popularity_rating,
            "0.3 .. 0.6",
            0.3 <= second.spearman_popularity_rating <= 0.6,
        ),
        (
            "median favourite share",
            second.favourite_share_median or 0.0,
            "0.2 .. 0.4",
            0.2 <= (second.favourite_share_median or 0.0) <= 0.4,
        ),
        (
            "gaps under one hour",
            second.gap_under_hour_share or 0.0,
            ">= 0.80",
            (second.gap_under_hour_share or 0.0) >= 0.8,
        ),
    ]


def persona_row(name: str, seed: int) -> tuple[float, float, float, bool]:
    """(JS divergence, favourite share median, max star share, met) for a persona."""
    spec = SPECS[name]
    sim = Simulator(
        population=[(name, 1.0)],
        specs=SPECS,
        n_users=1000,
        n_items=1500,
        n_interactions=40_000,
        seed=seed,
    )
    result = report(sim.frame(), declared={name: spec.mix()})
    assert result.profiles is not None
    fit = result.profiles.profiles[0]
    js = fit.js_divergence or 0.0
    favourite = fit.favourite_share_median or 0.0
    star_max = fit.star_max_share
    met = js <= 0.05 and 0.35 <= favourite <= 0.7 and star_max <= 0.6
    return js, favourite, star_max, met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    failures = 0

    print(f"movielens profile vs MovieLens 100K ({args.seeds} seeds)")
    print(
        f"{'measure':30} {'target':>14} "
        + " ".join(f"{'seed ' + str(s):>9}" for s in range(args.seeds))
    )
    table = [movielens_rows(seed) for seed in range(args.seeds)]
    for index, (measure, _, target, _) in enumerate(table[0]):
        cells = []
        for rows in table:
            _, value, _, met = rows[index]
            failures += not met
            cells.append(f"{value:8.3f}{' ' if met else '!'}")
        print(f"{measure:30} {target:>14} " + " ".join(cells))

    print("\npersonas (1,000 users, 1,500 items, 40,000 interactions; seed 0)")
    print(f"{'profile':12} {'JS to declared':>15} {'fav share':>10} {'max star':>9}")
    for name in PERSONAS:
        js, favourite, star_max, met = persona_row(name, 0)
        failures += not met
        mark = "" if met else "  <- misses: JS <= 0.05, fav 0.35-0.7, max star <= 0.6"
        print(f"{name:12} {js:15.4f} {favourite:10.3f} {star_max:9.3f}{mark}")
    print(f"\n{failures} target(s) missed" if failures else "\nall targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
