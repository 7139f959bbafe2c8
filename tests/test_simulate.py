"""The simulator: exact counts, determinism, shard independence, a golden digest."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest

from pytest_prisyn.errors import RequestError
from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.request import FORMAT_VERSION
from pytest_prisyn.simulate import Simulator
from pytest_prisyn.spec import build_spec

SPECS = {name: profile.spec for name, profile in BUILTIN.items()}


def simulator(profile: str | dict[str, float] = "tech", **sizes: int) -> Simulator:
    mix = {profile: 1.0} if isinstance(profile, str) else profile
    total = sum(mix.values())
    arguments = {"n_users": 60, "n_items": 120, "n_interactions": 1500, "seed": 3}
    arguments.update(sizes)
    return Simulator(
        population=[(name, share / total) for name, share in sorted(mix.items())],
        specs=SPECS,
        **arguments,
    )


def digest(frame: pd.DataFrame) -> str:
    """A stable content hash of a frame (independent of pandas' own hashing)."""
    sha = hashlib.sha256()
    for column in ("user_id", "item_id", "rating"):
        sha.update(frame[column].to_numpy().tobytes())
    sha.update(
        frame["timestamp"].dt.tz_convert(None).to_numpy().view("int64").tobytes()
    )
    for column in ("profile", "category"):
        sha.update("\n".join(frame[column].astype(str)).encode())
    return sha.hexdigest()


@pytest.mark.parametrize("profile", sorted(SPECS))
def test_every_profile_meets_the_contract(profile: str) -> None:
    frame = simulator(profile).frame()

    assert len(frame) == 1500
    assert frame["user_id"].nunique() == 60
    assert sorted(frame["user_id"].unique()) == list(range(1, 61))
    assert not frame.duplicated(["user_id", "item_id"]).any()
    assert frame["item_id"].between(1, 120).all()
    assert set(frame["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame.dtypes["user_id"] == np.int64
    assert frame.dtypes["item_id"] == np.int64
    assert frame.dtypes["rating"] == np.float64
    assert list(frame["profile"].unique()) == [profile]


def test_same_request_gives_the_same_frame() -> None:
    pd.testing.assert_frame_equal(simulator().frame(), simulator().frame())


def test_other_seed_gives_other_data() -> None:
    assert digest(simulator(seed=3).frame()) != digest(simulator(seed=4).frame())


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_shards_reassemble_to_the_whole(shards: int) -> None:
    sim = simulator(
        {"tech": 1, "gamer": 2}, n_users=2500, n_items=400, n_interactions=30_000
    )
    whole = sim.frame()
    bounds = np.linspace(0, sim.n_users, shards + 1).astype(int)
    parts = [sim.frame((int(a), int(b))) for a, b in itertools.pairwise(bounds)]

    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_a_shard_made_by_a_fresh_simulator_matches() -> None:
    whole = simulator(n_users=2100, n_items=300, n_interactions=20_000).frame()
    part = simulator(n_users=2100, n_items=300, n_interactions=20_000).frame(
        (1500, 2100)
    )

    pd.testing.assert_frame_equal(
        part, whole[whole["user_id"] > 1500].reset_index(drop=True)
    )


def test_golden_digest_pins_the_data_format() -> None:
    # If this fails, the generator now gives users different data for the same
    # request: bump request.FORMAT_VERSION on purpose and update the digest.
    frame = simulator(
        {"tech": 1, "foodie": 1}, n_users=40, n_items=80, n_interactions=600
    ).frame()

    assert FORMAT_VERSION == 2
    assert digest(frame) == GOLDEN


GOLDEN = "1a930735b11c8f03c5e4204a5ed279666795edddaa525a979b924f8d1d480d2c"


def test_every_user_is_capped_by_the_catalog_and_dense_requests_work() -> None:
    frame = simulator(n_users=10, n_items=12, n_interactions=120).frame()

    assert len(frame) == 120
    assert frame.groupby("user_id").size().eq(12).all()


@pytest.mark.parametrize("seed", range(4))
def test_heavy_users_thin_out_below_the_cap_instead_of_piling_on_it(
    seed: int,
) -> None:
    # MovieLens 100K's heaviest users rated 737, 685, 636, 540, ... of 1,682
    # items: a tail, not a crowd at one count (clipping put 11 users at 841).
    counts = simulator(
        "movielens", n_users=943, n_items=1682, n_interactions=100_000, seed=seed
    ).counts

    top = np.sort(counts)[-10:]
    assert counts.sum() == 100_000
    assert top[-1] <= 1682 // 2
    assert top[-2] < 1682 // 2
    assert len(set(top.tolist())) >= 9
    assert np.median(counts) == pytest.approx(65, rel=0.15)


def test_activity_fills_the_caps_when_the_total_needs_them() -> None:
    # 30 of 40 items for every user on average: the soft cap has no room.
    counts = simulator(n_users=20, n_items=40, n_interactions=600).counts

    assert counts.sum() == 600
    assert counts.max() <= 40


def test_one_item_catalog() -> None:
    frame = simulator(n_users=5, n_items=1, n_interactions=5).frame()

    assert frame["item_id"].eq(1).all()
    assert frame["user_id"].nunique() == 5


def test_catalog_names_every_item_once() -> None:
    sim = simulator({"music": 1, "traveller": 1})
    catalog = sim.catalog()
    frame = sim.frame()

    assert list(catalog["item_id"]) == list(range(1, 121))
    assert catalog["name"].is_unique
    merged = frame.merge(catalog, on="item_id", suffixes=("", "_catalog"))
    assert (
        merged["category"].astype(str) == merged["category_catalog"].astype(str)
    ).all()


def test_mixed_population_splits_users_by_share() -> None:
    frame = simulator(
        {"tech": 3, "fitness": 1}, n_users=400, n_interactions=4000
    ).frame()
    users = frame.drop_duplicates("user_id")["profile"].value_counts()

    assert users["tech"] == 300
    assert users["fitness"] == 100


def test_profile_users_follow_their_declared_categories() -> None:
    frame = simulator(
        {"gamer": 1, "foodie": 1}, n_users=200, n_interactions=6000
    ).frame()
    top = frame.groupby("profile", observed=True)["category"].agg(
        lambda c: c.value_counts().index[0]
    )

    assert top["gamer"] == "video-games"
    assert top["foodie"] == "restaurants"


def test_item_popularity_is_skewed_and_ids_are_not_in_popularity_order() -> None:
    frame = simulator(n_users=300, n_items=500, n_interactions=12_000).frame()
    counts = frame["item_id"].value_counts()

    assert counts.iloc[: len(counts) // 5].sum() / counts.sum() > 0.45
    assert abs(pd.Series(counts.index).corr(pd.Series(counts.to_numpy()))) < 0.2


def test_timestamps_come_in_sessions() -> None:
    frame = simulator("cinephile", n_users=100, n_interactions=5000).frame()
    gaps = frame.groupby("user_id")["timestamp"].diff().dropna().dt.total_seconds()

    assert (gaps < 3600).mean() > 0.6
    assert (gaps > 86_400).mean() > 0.01


def test_spec_with_a_half_star_scale() -> None:
    spec = build_spec(
        {
            "categories": {"a": 1, "b": 1},
            "rating_scale": {"low": 0.5, "high": 5.0, "step": 0.5},
            "star_shares": [1] * 10,
        },
        owner="halves",
    )
    sim = Simulator(
        population=[("halves", 1.0)],
        specs={"halves": spec},
        n_users=50,
        n_items=60,
        n_interactions=800,
        seed=1,
    )

    values = set(sim.frame()["rating"].unique())
    assert values <= {x / 2 for x in range(1, 11)}
    assert len(values) == 10


def test_every_timeline_fits_the_profiles_span() -> None:
    # Heavy users used to run years past span_days (found by a newcomer review).
    sim = simulator(
        {"tech": 5, "gamer": 3, "foodie": 2},
        n_users=2000,
        n_items=3000,
        n_interactions=120_000,
        seed=1,
    )
    frame = sim.frame()
    start = pd.Timestamp("2024-01-01", tz="UTC")
    spans = {name: SPECS[name].span_days for name in ("tech", "gamer", "foodie")}

    assert frame["timestamp"].min() >= start
    for name, days in spans.items():
        rows = frame[frame["profile"] == name]
        assert rows["timestamp"].max() <= start + pd.Timedelta(days=days)
    late = frame["timestamp"] > start + pd.Timedelta(days=0.8 * max(spans.values()))
    assert frame.loc[late, "user_id"].nunique() > 200


@pytest.mark.parametrize(
    "timing",
    [
        {"span_days": 1},
        {"span_days": 3, "session_size": 400, "session_gap_seconds": 3600},
        {"span_days": 30, "session_gap_seconds": 1e9},
    ],
    ids=["one-day", "long-sessions", "huge-gaps"],
)
def test_a_spec_at_its_limits_still_keeps_inside_its_span(timing: dict) -> None:
    shares = {"star_shares": [1, 1, 2, 3, 3]}
    spec = build_spec(
        {"categories": {"a": 1, "b": 1}, **shares, **timing}, owner="edge"
    )
    frame = Simulator(
        population=[("edge", 1.0)],
        specs={"edge": spec},
        n_users=30,
        n_items=500,
        n_interactions=6000,
        seed=2,
    ).frame()
    start = pd.Timestamp("2024-01-01", tz="UTC")

    assert frame["timestamp"].min() >= start
    assert frame["timestamp"].max() < start + pd.Timedelta(days=timing["span_days"])
    assert frame.groupby("user_id")["timestamp"].is_monotonic_increasing.all()


def test_tiny_requests_get_ratings_by_chance_not_by_quota() -> None:
    # Cut on its own single score, a one-row dataset was always the lowest star.
    ratings = [
        simulator(n_users=1, n_items=5, n_interactions=1, seed=seed).frame()
        for seed in range(12)
    ]
    stars = [int(frame["rating"].iloc[0]) for frame in ratings]

    assert len(set(stars)) >= 3
    assert set(stars) <= {1, 2, 3, 4, 5}


def test_more_than_127_profiles_share_one_population() -> None:
    specs = {
        f"p{index}": build_spec(
            {
                "categories": {f"c{index % 7}": 2, "misc": 1},
                "star_shares": [1, 1, 2, 3, 3],
            },
            owner="p",
        )
        for index in range(130)
    }
    frame = Simulator(
        population=[(name, 1 / 130) for name in sorted(specs)],
        specs=specs,
        n_users=260,
        n_items=100,
        n_interactions=2600,
        seed=0,
    ).frame()

    assert frame["profile"].nunique() == 130
    assert len(frame) == 2600


def test_weekends_and_evenings_are_busier() -> None:
    frame = simulator(n_users=1000, n_items=800, n_interactions=40_000).frame()
    by_weekday = frame["timestamp"].dt.day_of_week.value_counts(normalize=True)
    by_hour = frame["timestamp"].dt.hour.value_counts(normalize=True)

    assert by_weekday[[5, 6]].mean() > 1.15 * by_weekday[[0, 1, 2, 3, 4]].mean()
    assert by_hour.max() < 2.5 * by_hour.min()


@pytest.mark.parametrize(
    ("mix", "n_users"),
    [({"tech": 0.999, "gamer": 0.001}, 10), ({"tech": 1, "gamer": 1, "music": 1}, 2)],
)
def test_a_profile_left_without_users_is_an_error(
    mix: dict[str, float], n_users: int
) -> None:
    with pytest.raises(RequestError, match="get no users"):
        simulator(mix, n_users=n_users, n_interactions=40)
