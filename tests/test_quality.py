"""Tests for the realism measures, the report and its pictures."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pytest_prisyn import quality
from pytest_prisyn.quality import (
    MOVIELENS_100K,
    ComparisonRow,
    ReportDependencyError,
    gini,
    js_divergence,
    spearman,
    star_histogram,
    total_variation,
    wasserstein_ordinal,
)

Row = tuple[int, int, float, str, str, str]

DAY = "2024-03-01"

# Three users with hand-countable categories, timestamps and ratings.
TASTE_ROWS: list[Row] = [
    (1, 10, 4.0, f"{DAY} 10:00:00", "fan", "A"),
    (1, 11, 4.0, f"{DAY} 10:00:00", "fan", "A"),
    (1, 20, 2.0, f"{DAY} 10:30:00", "fan", "B"),
    (1, 30, 5.0, f"{DAY} 12:00:00", "fan", "C"),
    (2, 10, 3.0, f"{DAY} 09:00:00", "fan", "A"),
    (2, 21, 1.0, f"{DAY} 09:59:59", "fan", "B"),
    (3, 30, 5.0, f"{DAY} 08:00:00", "critic", "C"),
    (3, 31, 5.0, f"{DAY} 08:00:00", "critic", "C"),
    (3, 32, 3.0, "2024-03-03 08:00:00", "critic", "C"),
]


def _frame(rows: list[Row]) -> pd.DataFrame:
    """Build an interaction frame following the package's data contract."""
    users, items, ratings, times, profiles, categories = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": np.array(users, dtype=np.int64),
            "item_id": np.array(items, dtype=np.int64),
            "rating": np.array(ratings, dtype=np.float64),
            "timestamp": pd.to_datetime(
                list(times), utc=True, format="ISO8601"
            ).as_unit("ns"),
            "profile": pd.Categorical(profiles),
            "category": pd.Categorical(categories),
        }
    )


def _separated_rows() -> list[Row]:
    """Four 'action' users rating only A items, four 'drama' users only B items."""
    rows: list[Row] = []
    for user in range(1, 9):
        profile, category, base = (
            ("action", "A", 100) if user <= 4 else ("drama", "B", 200)
        )
        for item in range(3):
            stamp = f"{DAY} 10:0{item}:00"
            rows.append((user, base + item, 5.0, stamp, profile, category))
    return rows


def _identical_rows(users: int = 400, seed: int = 7) -> list[Row]:
    """Two profiles whose users draw categories from one and the same mix."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for user in range(1, users + 1):
        profile = "left" if user % 2 else "right"
        items = rng.choice(200, size=20, replace=False)
        for item in items:
            category = "ABCD"[int(item) % 4]
            rating = float(rng.integers(1, 6))
            rows.append((user, int(item), rating, f"{DAY} 10:00:00", profile, category))
    return rows


# gini


def test_gini_of_equal_counts_is_zero() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)


def test_gini_of_one_holder_follows_the_reference_formula() -> None:
    # (2 * 4 * 10) / (4 * 10) - 5 / 4
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)


def test_gini_sorts_its_input() -> None:
    # sorted 1, 2, 3: 2 * 14 / (3 * 6) - 4 / 3 = 2 / 9
    assert gini([3, 1, 2]) == pytest.approx(2 / 9)


@pytest.mark.parametrize("counts", [[], [0, 0]])
def test_gini_of_nothing_is_zero(counts: list[int]) -> None:
    assert gini(counts) == 0.0


def test_gini_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        gini([1, -1])


# histogram distances


def test_total_variation_is_half_the_absolute_difference() -> None:
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)


def test_total_variation_normalises_counts() -> None:
    assert total_variation([1, 1], [2, 0]) == pytest.approx(0.5)


def test_total_variation_of_identical_and_disjoint() -> None:
    assert total_variation([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0)
    assert total_variation([1, 0], [0, 1]) == pytest.approx(1.0)


def test_total_variation_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        total_variation([1, 0], [1, 0, 0])


def test_total_variation_rejects_an_empty_histogram() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        total_variation([0, 0], [1, 0])


def test_wasserstein_moves_all_mass_two_stars() -> None:
    assert wasserstein_ordinal([1, 0, 0], [0, 0, 1], [1, 2, 3]) == pytest.approx(2.0)


def test_wasserstein_sums_cdf_gaps_times_steps() -> None:
    # CDFs 0.5, 1, 1 and 0, 0.5, 1: gaps 0.5 and 0.5, steps of one star
    p, q = [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]
    assert wasserstein_ordinal(p, q, [1, 2, 3]) == pytest.approx(1.0)


def test_wasserstein_uses_half_star_steps() -> None:
    assert wasserstein_ordinal([1, 0, 0], [0, 0, 1], [1, 1.5, 2]) == pytest.approx(1.0)


def test_wasserstein_rejects_unordered_values() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        wasserstein_ordinal([1, 0], [0, 1], [2, 1])


def test_js_divergence_of_identical_is_zero() -> None:
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)


def test_js_divergence_of_disjoint_is_one() -> None:
    assert js_divergence([1, 0, 0], [0, 0.5, 0.5]) == pytest.approx(1.0)


def test_js_divergence_by_hand() -> None:
    # middle 0.75 / 0.25: 0.5 * log2(4/3) + 0.5 * (0.5 * log2(2/3) + 0.5 * log2(2))
    expected = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(expected)
    assert js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(expected)


# spearman


def test_spearman_of_monotone_relations() -> None:
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 5, 2, 0]) == pytest.approx(-1.0)


def test_spearman_averages_tied_ranks() -> None:
    # ranks 1, 2, 3 against 1.5, 1.5, 3: covariance 1.5 / sqrt(2 * 1.5)
    assert spearman([1, 2, 3], [7, 7, 9]) == pytest.approx(math.sqrt(3) / 2)


def test_spearman_is_nan_when_a_side_is_constant() -> None:
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(spearman([1], [2]))


def test_spearman_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        spearman([1, 2], [1, 2, 3])


# star histogram


def test_star_histogram_counts_off_scale_ratings_in_no_bar() -> None:
    shares = star_histogram([1, 2, 2, 5, 3.3], [1, 2, 3, 4, 5])
    assert shares.tolist() == pytest.approx([0.2, 0.4, 0.0, 0.0, 0.2])


def test_star_histogram_on_half_stars() -> None:
    shares = star_histogram([0.5, 4.5, 4.5, 5.0], np.arange(0.5, 5.01, 0.5))
    assert shares[0] == pytest.approx(0.25)
    assert shares[8] == pytest.approx(0.5)
    assert shares[9] == pytest.approx(0.25)


def test_star_histogram_of_no_ratings_is_zero() -> None:
    assert star_histogram([], [1, 2, 3]).tolist() == [0.0, 0.0, 0.0]


# shape and ratings


def test_shape_counts_users_items_and_quantiles() -> None:
    shape = quality.report(_frame(TASTE_ROWS)).shape
    assert (shape.users, shape.items, shape.interactions) == (3, 7, 9)
    assert shape.density == pytest.approx(9 / 21)
    assert (shape.per_user.min, shape.per_user.median) == (2.0, 3.0)
    assert (shape.per_user.max, shape.per_user.mean) == (4.0, 3.0)
    assert shape.per_item.max == 2.0
    assert shape.items_with_one_share == pytest.approx(5 / 7)
    assert shape.duplicate_pairs == 0
    assert shape.catalog_coverage is None


def test_shape_counts_duplicate_pairs() -> None:
    rows = [*TASTE_ROWS, TASTE_ROWS[0]]
    assert quality.report(_frame(rows)).shape.duplicate_pairs == 1


def test_catalog_coverage_and_items_outside_it() -> None:
    catalog = pd.DataFrame(
        {
            "item_id": [10, 11, 20, 21, 30, 31, 32, 40, 41, 42, 43, 44, 45, 46, 47, 48],
            "name": [f"item {i}" for i in range(16)],
            "category": "A",
        }
    )
    rows = [*TASTE_ROWS, (2, 99, 4.0, f"{DAY} 11:00:00", "fan", "A")]
    shape = quality.report(_frame(rows), catalog=catalog).shape
    assert shape.catalog_items == 16
    assert shape.catalog_coverage == pytest.approx(7 / 16)
    assert shape.items_outside_catalog == 1


def test_rating_histogram_mean_and_spread() -> None:
    ratings = quality.report(_frame(TASTE_ROWS)).ratings
    assert ratings.scale_values == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert ratings.shares == pytest.approx([1 / 9, 1 / 9, 2 / 9, 2 / 9, 3 / 9])
    assert ratings.off_scale_share == pytest.approx(0.0)
    values = np.array([row[2] for row in TASTE_ROWS])
    assert ratings.mean == pytest.approx(values.mean())
    assert ratings.sd == pytest.approx(values.std())
    # user means 15/4, 2, 13/3; within-user SDs 1.0897, 1.0, 0.9428
    assert ratings.user_mean_median == pytest.approx(15 / 4)
    assert ratings.within_user_sd_median == pytest.approx(1.0)


def test_rating_scale_can_be_given_or_inferred_as_half_stars() -> None:
    rows = [(1, 1, 0.5, f"{DAY} 10:00:00", "p", "A"), (1, 2, 4.5, DAY, "p", "A")]
    inferred = quality.report(_frame(rows)).ratings
    assert inferred.scale_values == tuple(np.arange(0.5, 5.01, 0.5))
    given = quality.report(_frame(rows), rating_scale=[0.5, 4.5]).ratings
    assert given.shares == (0.5, 0.5)


def test_ratings_off_the_given_scale_are_reported() -> None:
    frame = _frame(TASTE_ROWS)
    ratings = quality.report(frame, rating_scale=[1, 2, 3, 4]).ratings
    assert ratings.off_scale_share == pytest.approx(3 / 9)


# popularity


def _popularity_rows() -> list[Row]:
    """Item 1 rated 5 stars by ten users; items 2-10 rated 1 star by one user each."""
    rows: list[Row] = [(u, 1, 5.0, DAY, "p", "A") for u in range(1, 11)]
    rows += [(u, u + 1, 1.0, DAY, "p", "A") for u in range(1, 10)]
    return rows


def test_popularity_concentration_by_hand() -> None:
    popularity = quality.report(_frame(_popularity_rows())).popularity
    assert popularity.item_gini == pytest.approx(gini([10] + [1] * 9))
    assert popularity.top_1pct_share == pytest.approx(10 / 19)
    assert popularity.top_10pct_share == pytest.approx(10 / 19)
    assert popularity.top_20pct_share == pytest.approx(11 / 19)
    assert popularity.user_gini == pytest.approx(gini([2] * 9 + [1]))


def test_popular_items_rated_higher_give_positive_spearman() -> None:
    second = quality.report(_frame(_popularity_rows())).second_order
    assert second.spearman_popularity_rating == pytest.approx(1.0)


# second-order measures


def test_favourite_share_and_entropy_on_a_tiny_frame() -> None:
    second = quality.report(_frame(TASTE_ROWS)).second_order
    # favourite shares 0.5, 0.5, 1.0; entropies 1.5, 1.0, 0.0 bits
    assert second.favourite_share_p10 == pytest.approx(0.5)
    assert second.favourite_share_median == pytest.approx(0.5)
    assert second.favourite_share_p90 == pytest.approx(0.9)
    assert second.category_entropy_median_bits == pytest.approx(1.0)


def test_gap_shares_on_hand_made_timestamps() -> None:
    shuffled = list(reversed(TASTE_ROWS))
    second = quality.report(_frame(shuffled)).second_order
    # gaps: user 1 0 s, 30 min, 90 min; user 2 3599 s; user 3 0 s, 2 days
    assert second.gap_under_hour_share == pytest.approx(4 / 6)
    assert second.gap_zero_share == pytest.approx(2 / 6)
    assert second.single_day_user_share == pytest.approx(2 / 3)


def test_gaps_are_measured_in_whole_seconds() -> None:
    rows = [
        (1, 1, 3.0, f"{DAY} 10:00:00.2", "p", "A"),
        (1, 2, 3.0, f"{DAY} 10:00:00.7", "p", "A"),
        (1, 3, 3.0, f"{DAY} 11:00:00.7", "p", "A"),
    ]
    second = quality.report(_frame(rows)).second_order
    assert second.gap_zero_share == pytest.approx(0.5)
    assert second.gap_under_hour_share == pytest.approx(0.5)


def test_unix_second_timestamps_are_accepted() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": [1, 2],
            "rating": [3.0, 4.0],
            "timestamp": [0, 60],
        }
    )
    assert quality.report(frame).second_order.gap_under_hour_share == 1.0


def test_measures_needing_absent_columns_are_none() -> None:
    frame = _frame(TASTE_ROWS).drop(columns=["timestamp", "category", "profile"])
    result = quality.report(frame)
    assert result.second_order.favourite_share_median is None
    assert result.second_order.gap_under_hour_share is None
    assert result.profiles is None


# profile fidelity


def test_declared_mix_fidelity_per_profile() -> None:
    declared = {"action": {"A": 1.0}, "drama": {"A": 1.0, "B": 1.0}}
    section = quality.report(_frame(_separated_rows()), declared=declared).profiles
    assert section is not None
    action, drama = section.profiles
    assert (action.name, action.users, action.interactions) == ("action", 4, 12)
    assert action.js_divergence == pytest.approx(0.0)
    assert action.observed_mix == {"A": 1.0}
    assert drama.declared_mix == {"A": 0.5, "B": 0.5}
    assert drama.js_divergence == pytest.approx(js_divergence([0.5, 0.5], [0, 1]))
    assert section.max_js_divergence == drama.js_divergence
    assert action.favourite_share_median == pytest.approx(1.0)
    assert action.star_max_share == pytest.approx(1.0)
    assert action.rating_mean == pytest.approx(5.0)


def test_undeclared_profiles_have_no_divergence() -> None:
    section = quality.report(_frame(_separated_rows())).profiles
    assert section is not None
    assert [fit.js_divergence for fit in section.profiles] == [None, None]
    assert section.max_js_divergence is None


def test_separated_profiles_are_recovered_exactly() -> None:
    section = quality.report(_frame(_separated_rows())).profiles
    assert section is not None
    separability = section.separability
    assert separability is not None
    assert separability.accuracy == 1.0
    assert separability.chance == 0.5
    assert (separability.train_users, separability.test_users) == (4, 4)
    assert separability.confusion == {"action": {"action": 2}, "drama": {"drama": 2}}
    assert separability.recall == {"action": 1.0, "drama": 1.0}


def test_identical_profiles_are_recovered_at_chance() -> None:
    section = quality.report(_frame(_identical_rows())).profiles
    assert section is not None
    separability = section.separability
    assert separability is not None
    assert separability.test_users == 200
    assert separability.chance == 0.5
    assert abs(separability.accuracy - 0.5) < 0.12


def test_one_profile_has_no_separability() -> None:
    rows = [row for row in _separated_rows() if row[4] == "action"]
    section = quality.report(_frame(rows)).profiles
    assert section is not None
    assert section.separability is None


# whole report


def test_to_dict_is_json_ready() -> None:
    frame = _frame(_separated_rows())
    result = quality.report(
        frame, declared={"action": {"A": 1}}, reference=MOVIELENS_100K
    )
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["popularity"]["item_gini"] == pytest.approx(result.popularity.item_gini)
    assert data["second_order"]["spearman_popularity_rating"] is None
    assert data["reference"] == "MovieLens 100K"
    assert {"measure", "value", "target", "tolerance", "verdict"} <= set(
        data["comparison"][0]
    )


def test_movielens_reference_numbers() -> None:
    assert MOVIELENS_100K.star_values == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert sum(MOVIELENS_100K.star_shares) == pytest.approx(1.0)
    assert MOVIELENS_100K.item_gini == 0.63
    assert MOVIELENS_100K.gap_under_hour_share == 0.98


def test_comparison_judges_each_measure() -> None:
    result = quality.report(_frame(_popularity_rows()))
    rows = {row.measure: row for row in result.comparison(MOVIELENS_100K)}
    gini_row = rows["popularity.item_gini"]
    assert gini_row.target == 0.63
    assert gini_row.value == pytest.approx(result.popularity.item_gini)
    assert gini_row.verdict == "off"
    assert rows["shape.per_user.median"].verdict == "info"
    assert rows["ratings.share[5]"].value == pytest.approx(10 / 19)
    assert rows["ratings.histogram_tvd"].target == 0.0


def test_comparison_row_verdicts() -> None:
    assert ComparisonRow.judge("m", 0.55, 0.5, 0.1).verdict == "ok"
    assert ComparisonRow.judge("m", 0.7, 0.5, 0.1).verdict == "off"
    assert ComparisonRow.judge("m", 7.0, 5.0, None).verdict == "info"
    assert ComparisonRow.judge("m", None, 0.5, 0.1).verdict == "n/a"


def test_comparison_needs_a_reference() -> None:
    with pytest.raises(ValueError, match="MOVIELENS_100K"):
        quality.report(_frame(TASTE_ROWS)).comparison()


def test_format_table_lists_measures_profiles_and_verdicts() -> None:
    result = quality.report(_frame(_separated_rows()))
    plain = result.format_table()
    assert plain.startswith("8 users x 6 items, 24 interactions")
    assert "popularity.item_gini" in plain
    assert "drama" in plain
    assert "nearest-centroid accuracy 1.000" in plain
    assert "verdict" not in plain
    judged = result.format_table(MOVIELENS_100K)
    assert "verdict" in judged
    assert " off" in judged


def test_report_rejects_frames_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="rating"):
        quality.report(pd.DataFrame({"user_id": [1], "item_id": [1]}))
    with pytest.raises(ValueError, match="empty"):
        quality.report(_frame(TASTE_ROWS).iloc[:0])


def test_numbers_never_import_matplotlib_or_scipy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "scipy", None)
    result = quality.report(_frame(TASTE_ROWS), reference=MOVIELENS_100K)
    assert result.format_table()
    assert result.to_dict()


# pictures


def test_render_html_writes_one_self_contained_page(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    frame = _frame(_separated_rows())
    catalog = pd.DataFrame(
        {"item_id": [100, 200], "name": ["Heat", "Brief <Encounter>"], "category": "A"}
    )
    result = quality.report(
        frame, declared={"action": {"A": 1.0}}, reference=MOVIELENS_100K
    )
    path = quality.render_html(
        result, frame, tmp_path / "out" / "quality.html", catalog=catalog
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "quality.html"]
    page = path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 4
    assert "popularity.item_gini" in page
    assert "nearest-centroid accuracy" in page
    assert "Brief &lt;Encounter&gt;" in page


def test_render_pngs_writes_the_four_pictures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    frame = _frame(_separated_rows())
    paths = quality.render_pngs(quality.report(frame), frame, tmp_path)
    assert sorted(p.name for p in paths) == [
        "category_mix.png",
        "item_popularity.png",
        "rating_histogram.png",
        "user_activity.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_pictures_without_matplotlib_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    frame = _frame(TASTE_ROWS)
    result = quality.report(frame)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "pytest-prisyn\[report\]"'):
        quality.render_html(result, frame, tmp_path / "quality.html")
    with pytest.raises(ReportDependencyError):
        quality.render_pngs(result, frame, tmp_path)
    assert not list(tmp_path.iterdir())
