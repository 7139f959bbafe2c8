"""Realism targets of issue 3, held by tests (the benchmark prints the same table).

Sources: MovieLens 100K numbers from GroupLens' u.data (see README); the targets
are the ones the realism benchmark checks (`benchmarks/realism.py`).
"""

from __future__ import annotations

import pandas as pd
import pytest

from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.quality import MOVIELENS_100K, report, total_variation
from pytest_prisyn.signal import learnable_signal, leave_last_out
from pytest_prisyn.simulate import Simulator

SPECS = {name: profile.spec for name, profile in BUILTIN.items() if profile.spec}
PERSONAS = sorted(name for name in SPECS if name != "movielens")


def simulate(population: dict[str, float], **sizes: int) -> Simulator:
    total = sum(population.values())
    return Simulator(
        population=[
            (name, share / total) for name, share in sorted(population.items())
        ],
        specs=SPECS,
        **sizes,
    )


@pytest.fixture(scope="module")
def movielens() -> pd.DataFrame:
    sim = simulate(
        {"movielens": 1}, n_users=943, n_items=1682, n_interactions=100_000, seed=0
    )
    return sim.frame()


def test_movielens_profile_meets_the_reference_targets(movielens: pd.DataFrame) -> None:
    result = report(movielens)
    per_user = result.shape.per_user
    second = result.second_order

    assert total_variation(result.ratings.shares, MOVIELENS_100K.star_shares) <= 0.05
    assert abs(result.ratings.mean - 3.53) <= 0.05
    assert abs(result.popularity.item_gini - 0.63) <= 0.05
    assert abs(result.popularity.top_20pct_share - 0.647) <= 0.05
    assert per_user.min >= 20
    assert abs(per_user.median - 65) <= 0.25 * 65
    assert abs(per_user.p90 - 244) <= 0.25 * 244
    assert 0.3 <= second.spearman_popularity_rating <= 0.6
    assert second.favourite_share_median is not None
    assert 0.2 <= second.favourite_share_median <= 0.4
    assert second.gap_under_hour_share is not None
    assert second.gap_under_hour_share >= 0.8


@pytest.mark.parametrize("persona", PERSONAS)
def test_persona_is_recognisable_but_broad(persona: str) -> None:
    frame = simulate(
        {persona: 1}, n_users=500, n_items=800, n_interactions=20_000, seed=1
    ).frame()
    spec = SPECS[persona]
    result = report(frame, declared={persona: spec.mix()})
    assert result.profiles is not None
    fit = result.profiles.profiles[0]

    assert fit.js_divergence is not None
    assert fit.js_divergence <= 0.02
    assert fit.favourite_share_median is not None
    assert 0.35 <= fit.favourite_share_median <= 0.7
    assert fit.star_max_share <= 0.6
    top_declared = max(spec.mix(), key=lambda name: spec.mix()[name])
    assert frame["category"].value_counts().index[0] == top_declared


@pytest.mark.parametrize(
    "population",
    [{name: 1.0} for name in sorted(SPECS)] + [dict.fromkeys(PERSONAS, 1.0)],
    ids=[*sorted(SPECS), "mixed"],
)
def test_personalisation_beats_popularity_beats_random(
    population: dict[str, float],
) -> None:
    # Eight personas share the popular items thinly, so popularity's lead over
    # random is small there and 400 users leave it to chance (2x was met on 19
    # and 22 of 30 seeds by the old and the vectorised sampler; 18 and 20 of 20
    # at 2,000 users): the mixed population gets five times the users.
    scale = 5 if len(population) > 1 else 1
    frame = simulate(
        population,
        n_users=400 * scale,
        n_items=500,
        n_interactions=16_000 * scale,
        seed=2,
    ).frame()
    signal = learnable_signal(frame, k=10)
    # MovieLens-like data is dominated by popularity, as the real data is:
    # personalisation wins there by less (measured 1.2-1.4x over seeds 0-3).
    margin = 1.15 if population == {"movielens": 1.0} else 1.25

    assert signal.item_knn.hit_rate >= margin * signal.popularity.hit_rate
    assert signal.item_knn.ndcg >= margin * signal.popularity.ndcg
    assert signal.popularity.hit_rate >= 2 * signal.random.hit_rate
    assert signal.popularity.ndcg >= 2 * signal.random.ndcg


def test_profiles_of_a_mixed_population_can_be_told_apart() -> None:
    population = dict.fromkeys(PERSONAS, 1.0)
    frame = simulate(
        population, n_users=800, n_items=1000, n_interactions=32_000, seed=3
    ).frame()
    result = report(frame, declared={name: SPECS[name].mix() for name in population})

    assert result.profiles is not None
    assert result.profiles.separability is not None
    assert result.profiles.separability.accuracy >= 0.9


def test_leave_last_out_holds_out_each_users_latest() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3, 3],
            "item_id": [10, 11, 12, 10, 13, 14],
            "timestamp": pd.to_datetime([3, 1, 2, 5, 7, 9], unit="s", utc=True),
        }
    )
    train, test = leave_last_out(frame)

    assert sorted(zip(test["user_id"], test["item_id"], strict=True)) == [
        (1, 10),
        (3, 14),
    ]
    assert len(train) == 4
