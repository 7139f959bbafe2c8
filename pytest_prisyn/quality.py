"""Realism measures of interaction logs, compared with real data and drawn."""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

REPORT_EXTRA_HINT = 'pip install "pytest-prisyn[report]"'

# An inferred rating scale has at most this many values (0-10 in half stars);
# ratings spread wider are not stars, and the histogram would grow with them.
MAX_INFERRED_SCALE = 21
_HOUR_SECONDS = 3_600
_DAY_SECONDS = 86_400
_SCALE_MATCH = 1e-6
_LEGEND_ROWS = 12


class ReportDependencyError(ImportError):
    """An optional dependency needed to draw the report is missing."""


@dataclass(frozen=True)
class Reference:
    """Target numbers measured on a real interaction log; None means not known."""

    name: str
    source: str = ""
    star_values: tuple[float, ...] = ()
    star_shares: tuple[float, ...] = ()
    rating_mean: float | None = None
    rating_sd: float | None = None
    user_mean_p10: float | None = None
    user_mean_median: float | None = None
    user_mean_p90: float | None = None
    within_user_sd_median: float | None = None
    density: float | None = None
    per_user_min: float | None = None
    per_user_p25: float | None = None
    per_user_median: float | None = None
    per_user_mean: float | None = None
    per_user_p75: float | None = None
    per_user_p90: float | None = None
    per_user_max: float | None = None
    per_item_min: float | None = None
    per_item_median: float | None = None
    per_item_mean: float | None = None
    per_item_max: float | None = None
    items_with_one_share: float | None = None
    item_gini: float | None = None
    top_1pct_share: float | None = None
    top_10pct_share: float | None = None
    top_20pct_share: float | None = None
    user_gini: float | None = None
    spearman_popularity_rating: float | None = None
    spearman_activity_rating: float | None = None
    favourite_share_p10: float | None = None
    favourite_share_median: float | None = None
    favourite_share_p90: float | None = None
    gap_under_hour_share: float | None = None
    gap_zero_share: float | None = None
    single_day_user_share: float | None = None


# Computed from the public GroupLens MovieLens 100K file ml-100k/u.data (943 users,
# 1,682 items, 100,000 ratings); dataset described in F. M. Harper and J. A. Konstan,
# "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015. Favourite
# category is the favourite genre; gaps are between one user's consecutive ratings.
MOVIELENS_100K = Reference(
    name="MovieLens 100K",
    source="GroupLens ml-100k u.data (Harper & Konstan 2015)",
    star_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    star_shares=(0.061, 0.114, 0.271, 0.342, 0.212),
    rating_mean=3.53,
    rating_sd=1.13,
    user_mean_p10=3.03,
    user_mean_median=3.62,
    user_mean_p90=4.13,
    within_user_sd_median=1.0,
    density=0.063,
    per_user_min=20,
    per_user_p25=33,
    per_user_median=65,
    per_user_mean=106,
    per_user_p75=148,
    per_user_p90=244,
    per_user_max=737,
    per_item_min=1,
    per_item_median=27,
    per_item_mean=59.5,
    per_item_max=583,
    items_with_one_share=0.084,
    item_gini=0.63,
    top_1pct_share=0.073,
    top_10pct_share=0.427,
    top_20pct_share=0.647,
    user_gini=0.47,
    spearman_popularity_rating=0.50,
    spearman_activity_rating=-0.06,
    favourite_share_p10=0.20,
    favourite_share_median=0.27,
    favourite_share_p90=0.40,
    gap_under_hour_share=0.98,
    gap_zero_share=0.51,
    single_day_user_share=0.68,
)

# (measure path in to_dict(), Reference field, tolerance). Tolerances are wide on
# purpose: test data should behave like a real log, not copy one. Counts that grow
# with the size of the log have no tolerance and are shown for information only.
_COMPARED: tuple[tuple[str, str, float | None], ...] = (
    ("ratings.mean", "rating_mean", 0.25),
    ("ratings.sd", "rating_sd", 0.20),
    ("ratings.user_mean_p10", "user_mean_p10", 0.30),
    ("ratings.user_mean_median", "user_mean_median", 0.30),
    ("ratings.user_mean_p90", "user_mean_p90", 0.30),
    ("ratings.within_user_sd_median", "within_user_sd_median", 0.25),
    ("shape.density", "density", None),
    ("shape.per_user.min", "per_user_min", None),
    ("shape.per_user.p25", "per_user_p25", None),
    ("shape.per_user.median", "per_user_median", None),
    ("shape.per_user.mean", "per_user_mean", None),
    ("shape.per_user.p75", "per_user_p75", None),
    ("shape.per_user.p90", "per_user_p90", None),
    ("shape.per_user.max", "per_user_max", None),
    ("shape.per_item.min", "per_item_min", None),
    ("shape.per_item.median", "per_item_median", None),
    ("shape.per_item.mean", "per_item_mean", None),
    ("shape.per_item.max", "per_item_max", None),
    ("shape.items_with_one_share", "items_with_one_share", None),
    ("popularity.item_gini", "item_gini", 0.10),
    ("popularity.top_1pct_share", "top_1pct_share", 0.05),
    ("popularity.top_10pct_share", "top_10pct_share", 0.10),
    ("popularity.top_20pct_share", "top_20pct_share", 0.10),
    ("popularity.user_gini", "user_gini", 0.10),
    ("second_order.spearman_popularity_rating", "spearman_popularity_rating", 0.25),
    ("second_order.spearman_activity_rating", "spearman_activity_rating", 0.25),
    ("second_order.favourite_share_p10", "favourite_share_p10", 0.10),
    ("second_order.favourite_share_median", "favourite_share_median", 0.10),
    ("second_order.favourite_share_p90", "favourite_share_p90", 0.10),
    ("second_order.gap_under_hour_share", "gap_under_hour_share", 0.10),
    ("second_order.gap_zero_share", "gap_zero_share", 0.20),
    ("second_order.single_day_user_share", "single_day_user_share", 0.20),
)
_STAR_SHARE_TOLERANCE = 0.05
_STAR_TVD_TOLERANCE = 0.10
_STAR_W1_TOLERANCE = 0.25


def report(
    frame: pd.DataFrame,
    *,
    catalog: pd.DataFrame | None = None,
    declared: Mapping[str, Mapping[str, float]] | None = None,
    reference: Reference | None = None,
    rating_scale: Iterable[float] | None = None,
) -> QualityReport:
    """Measure how closely an interaction log behaves like real user data."""
    log = _InteractionLog.from_frame(frame, rating_scale)
    return QualityReport(
        shape=_shape_section(log, catalog),
        ratings=_rating_section(log),
        popularity=_popularity_section(log),
        second_order=_second_order_section(log),
        profiles=_profile_section(log, declared),
        reference=reference,
    )


def render_pngs(
    report: QualityReport, frame: pd.DataFrame, directory: str | Path
) -> list[Path]:
    """Draw the report's pictures as PNG files in a directory and return their paths."""
    pictures = _draw_pictures(report, frame)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in pictures.items():
        path = directory / f"{name}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths


def render_html(
    report: QualityReport,
    frame: pd.DataFrame,
    path: str | Path,
    *,
    catalog: pd.DataFrame | None = None,
) -> Path:
    """Write one self-contained HTML page with the report's numbers and pictures."""
    pictures = _draw_pictures(report, frame)
    page = _html_page(report, pictures, _top_items(frame, catalog))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Quantiles:
    """Distribution summary of a per-user or per-item count (linear interpolation)."""

    min: float
    p25: float
    median: float
    p75: float
    p90: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Quantiles:
        """Summarise the given values."""
        array = np.asarray(values, dtype=np.float64)
        low, p25, median, p75, p90, high = np.percentile(
            array, [0, 25, 50, 75, 90, 100]
        )
        return cls(
            min=float(low),
            p25=float(p25),
            median=float(median),
            p75=float(p75),
            p90=float(p90),
            max=float(high),
            mean=float(array.mean()),
        )


@dataclass(frozen=True)
class ShapeSection:
    """Size, sparsity and catalog coverage of the log."""

    users: int
    items: int
    interactions: int
    density: float
    per_user: Quantiles
    per_item: Quantiles
    items_with_one_share: float
    duplicate_pairs: int
    catalog_items: int | None
    catalog_coverage: float | None
    items_outside_catalog: int | None


@dataclass(frozen=True)
class RatingSection:
    """Star histogram and spread of ratings, overall and per user (population SD)."""

    scale_values: tuple[float, ...]
    shares: tuple[float, ...]
    off_scale_share: float
    mean: float
    sd: float
    user_mean_p10: float
    user_mean_median: float
    user_mean_p90: float
    within_user_sd_median: float


@dataclass(frozen=True)
class PopularitySection:
    """Concentration of interactions on items and on users."""

    item_gini: float
    top_1pct_share: float
    top_10pct_share: float
    top_20pct_share: float
    user_gini: float


@dataclass(frozen=True)
class SecondOrderSection:
    """Relations between measures: popularity and rating, taste breadth, sessions."""

    spearman_popularity_rating: float
    spearman_activity_rating: float
    favourite_share_p10: float | None
    favourite_share_median: float | None
    favourite_share_p90: float | None
    category_entropy_median_bits: float | None
    gap_under_hour_share: float | None
    gap_zero_share: float | None
    single_day_user_share: float | None


@dataclass(frozen=True)
class ProfileFit:
    """How the users of one profile behave next to what the profile declared."""

    name: str
    users: int
    interactions: int
    rating_mean: float
    star_max_share: float
    favourite_share_median: float | None
    declared_mix: dict[str, float] | None
    observed_mix: dict[str, float]
    js_divergence: float | None


@dataclass(frozen=True)
class Separability:
    """Nearest-centroid recovery of each user's profile from their category mix."""

    accuracy: float
    chance: float
    train_users: int
    test_users: int
    recall: dict[str, float]
    confusion: dict[str, dict[str, int]]


@dataclass(frozen=True)
class ProfileSection:
    """Per-profile fidelity to the declared specs and how distinct profiles are."""

    profiles: tuple[ProfileFit, ...]
    max_js_divergence: float | None
    separability: Separability | None


@dataclass(frozen=True)
class ComparisonRow:
    """One measure next to its reference target and the verdict."""

    measure: str
    value: float | None
    target: float
    tolerance: float | None
    verdict: str

    @classmethod
    def judge(
        cls, measure: str, value: float | None, target: float, tolerance: float | None
    ) -> ComparisonRow:
        """Compare a value with a target: ok, off, info (no tolerance) or n/a."""
        if value is None:
            verdict = "n/a"
        elif tolerance is None:
            verdict = "info"
        elif abs(value - target) <= tolerance + 1e-12:
            verdict = "ok"
        else:
            verdict = "off"
        return cls(measure, value, target, tolerance, verdict)


@dataclass(frozen=True)
class QualityReport:
    """Realism measures of one interaction log, by section."""

    shape: ShapeSection
    ratings: RatingSection
    popularity: PopularitySection
    second_order: SecondOrderSection
    profiles: ProfileSection | None
    reference: Reference | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the measures as plain JSON-ready values (NaN becomes None)."""
        data = self._measures()
        if self.reference is not None:
            data["reference"] = self.reference.name
            data["comparison"] = [
                _plain(dataclasses.asdict(row)) for row in self.comparison()
            ]
        return data

    def comparison(self, reference: Reference | None = None) -> list[ComparisonRow]:
        """Compare the measures with a reference (default: the one reported against)."""
        reference = reference or self.reference
        if reference is None:
            raise ValueError(
                "no reference to compare with: pass one, "
                "e.g. comparison(quality.MOVIELENS_100K)"
            )
        measures = self._measures()
        rows = self._star_rows(reference)
        for path, field_name, tolerance in _COMPARED:
            target = getattr(reference, field_name)
            if target is not None:
                value = _lookup(measures, path)
                rows.append(ComparisonRow.judge(path, value, target, tolerance))
        return rows

    def format_table(self, reference: Reference | None = None) -> str:
        """Render the measures (and verdicts, given a reference) for a terminal."""
        reference = reference or self.reference
        lines = [_summary_line(self)]
        header, rows = _measure_rows(self, reference)
        lines += ["", *_text_table(header, rows)]
        if self.profiles is not None:
            lines += ["", *_text_table(*_profile_rows(self.profiles))]
            if self.profiles.separability is not None:
                lines += ["", _separability_line(self.profiles.separability)]
        return "\n".join(lines)

    def _measures(self) -> dict[str, Any]:
        sections: dict[str, DataclassInstance | None] = {
            "shape": self.shape,
            "ratings": self.ratings,
            "popularity": self.popularity,
            "second_order": self.second_order,
            "profiles": self.profiles,
        }
        return {
            name: None if section is None else _plain(dataclasses.asdict(section))
            for name, section in sections.items()
        }

    def _star_rows(self, reference: Reference) -> list[ComparisonRow]:
        if not reference.star_values:
            return []
        observed = dict(
            zip(self.ratings.scale_values, self.ratings.shares, strict=True)
        )
        target = dict(zip(reference.star_values, reference.star_shares, strict=True))
        rows = [
            ComparisonRow.judge(
                f"ratings.share[{_value_label(value)}]",
                observed.get(value, 0.0),
                share,
                _STAR_SHARE_TOLERANCE,
            )
            for value, share in target.items()
        ]
        values = sorted(set(observed) | set(target))
        p = [observed.get(value, 0.0) for value in values]
        q = [target.get(value, 0.0) for value in values]
        tvd = w1 = None
        if sum(p) > 0:
            tvd = total_variation(p, q)
            w1 = wasserstein_ordinal(p, q, values)
        rows.append(
            ComparisonRow.judge("ratings.histogram_tvd", tvd, 0.0, _STAR_TVD_TOLERANCE)
        )
        rows.append(
            ComparisonRow.judge("ratings.histogram_w1", w1, 0.0, _STAR_W1_TOLERANCE)
        )
        return rows


def gini(counts: npt.ArrayLike) -> float:
    """Gini coefficient of counts: 0 when all equal, near 1 when concentrated."""
    values = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError("gini needs finite non-negative counts")
    n = values.size
    total = values.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.dot(ranks, values) / (n * total) - (n + 1) / n)


def total_variation(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Total variation distance between two histograms (each normalised to sum 1)."""
    p_shares, q_shares = _distribution_pair(p, q)
    return float(0.5 * np.abs(p_shares - q_shares).sum())


def wasserstein_ordinal(
    p: npt.ArrayLike, q: npt.ArrayLike, values: npt.ArrayLike
) -> float:
    """Wasserstein-1 distance between two histograms over increasing ordinal values."""
    p_shares, q_shares = _distribution_pair(p, q)
    points = _increasing(values, p_shares.size)
    cdf_gap = np.abs(np.cumsum(p_shares) - np.cumsum(q_shares))[:-1]
    return float(np.dot(cdf_gap, np.diff(points)))


def js_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence in bits (0 identical, 1 disjoint) of two histograms."""
    p_shares, q_shares = _distribution_pair(p, q)
    middle = 0.5 * (p_shares + q_shares)
    divergence = 0.5 * _kl_bits(p_shares, middle) + 0.5 * _kl_bits(q_shares, middle)
    return float(min(max(divergence, 0.0), 1.0))


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when undefined."""
    first = np.asarray(x, dtype=np.float64).ravel()
    second = np.asarray(y, dtype=np.float64).ravel()
    if first.size != second.size:
        raise ValueError(
            f"spearman needs equal lengths, got {first.size} and {second.size}"
        )
    keep = np.isfinite(first) & np.isfinite(second)
    if keep.sum() < 2:
        return math.nan
    first_ranks = pd.Series(first[keep]).rank(method="average").to_numpy()
    second_ranks = pd.Series(second[keep]).rank(method="average").to_numpy()
    if first_ranks.std() == 0 or second_ranks.std() == 0:
        return math.nan
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def star_histogram(ratings: npt.ArrayLike, scale_values: npt.ArrayLike) -> FloatArray:
    """Share of ratings on each scale value; off-scale ratings count in no bar."""
    values = np.asarray(ratings, dtype=np.float64).ravel()
    scale = _increasing(scale_values, None)
    if values.size == 0:
        return np.zeros(scale.size)
    index = _scale_index(values, scale)
    counts = np.bincount(index[index >= 0], minlength=scale.size)
    return counts / values.size


@dataclass(frozen=True)
class _UserMix:
    """Sparse per-user category counts, sorted by user, one entry per pair seen."""

    users: IntArray
    categories: IntArray
    counts: FloatArray
    shares: FloatArray
    starts: IntArray

    @property
    def user_index(self) -> IntArray:
        return self.users[self.starts]


@dataclass(frozen=True)
class _InteractionLog:
    """The columns of an interaction frame as codes and numpy arrays."""

    user_codes: IntArray
    user_ids: npt.NDArray[Any]
    item_codes: IntArray
    item_ids: npt.NDArray[Any]
    ratings: FloatArray
    scale_values: FloatArray
    scale_index: IntArray
    seconds: npt.NDArray[np.int64] | None
    category_codes: IntArray | None
    categories: tuple[str, ...]
    user_profile: IntArray | None
    profiles: tuple[str, ...]
    user_counts: FloatArray
    item_counts: FloatArray
    user_means: FloatArray
    item_means: FloatArray
    mix: _UserMix | None

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, rating_scale: Iterable[float] | None
    ) -> _InteractionLog:
        missing = [c for c in ("user_id", "item_id", "rating") if c not in frame]
        if missing:
            raise ValueError(
                f"interaction frame lacks column(s) {missing}; it has {list(frame)}"
            )
        if len(frame) == 0:
            raise ValueError("cannot measure an empty interaction frame")
        for column in ("user_id", "item_id"):
            ids = frame[column]
            blank = ids.isna()
            if not pd.api.types.is_numeric_dtype(ids):
                # Text ids: "" or only spaces are as empty as a missing value.
                blank |= (ids.astype("string").str.strip() == "").fillna(False)
            _refuse_rows(ids, blank, f"{column} is empty")

        user_codes, user_ids = pd.factorize(frame["user_id"], sort=True)
        item_codes, item_ids = pd.factorize(frame["item_id"], sort=True)
        ratings = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        _refuse_rows(
            frame["rating"], ~np.isfinite(ratings), "rating is not a finite number"
        )
        scale = _scale_values(ratings, rating_scale)

        user_counts = np.bincount(user_codes).astype(np.float64)
        item_counts = np.bincount(item_codes).astype(np.float64)
        user_means = np.bincount(user_codes, weights=ratings) / user_counts
        item_means = np.bincount(item_codes, weights=ratings) / item_counts

        category_codes, categories = _optional_codes(frame, "category")
        profile_codes, profiles = _optional_codes(frame, "profile")
        user_profile = None
        if profile_codes is not None:
            user_profile = np.full(user_ids.size, -1, dtype=np.intp)
            user_profile[user_codes] = profile_codes

        mix = None
        if category_codes is not None and len(categories) > 0:
            mix = _user_mix(user_codes, category_codes, len(categories))

        return cls(
            user_codes=user_codes.astype(np.intp),
            user_ids=np.asarray(user_ids),
            item_codes=item_codes.astype(np.intp),
            item_ids=np.asarray(item_ids),
            ratings=ratings,
            scale_values=scale,
            scale_index=_scale_index(ratings, scale),
            seconds=_timestamp_seconds(frame),
            category_codes=category_codes,
            categories=categories,
            user_profile=user_profile,
            profiles=profiles,
            user_counts=user_counts,
            item_counts=item_counts,
            user_means=user_means,
            item_means=item_means,
            mix=mix,
        )


def _refuse_rows(column: pd.Series[Any], bad: Any, problem: str) -> None:
    """Raise naming how many rows have a problem and the first of them."""
    where = np.flatnonzero(np.asarray(bad))
    if where.size:
        first = int(where[0])
        value = column.iloc[first]
        if isinstance(value, np.generic):
            value = value.item()  # np.float64(inf) reads as inf
        shown = "empty" if pd.isna(value) else repr(value)
        raise ValueError(
            f"{problem} in {where.size} of {len(column)} rows (first: data row "
            f"{first + 1}, value {shown}); fix or drop those rows"
        )


def _scale_values(
    ratings: FloatArray, rating_scale: Iterable[float] | None
) -> FloatArray:
    """The allowed rating values, given or inferred (1-5 in steps of 1 or 0.5)."""
    if rating_scale is not None:
        values = np.array(sorted({float(v) for v in rating_scale}), dtype=np.float64)
        if values.size < 2 or not np.all(np.isfinite(values)):
            raise ValueError(
                "rating_scale must list at least two distinct finite rating values, "
                f"got {values.tolist()}"
            )
        return values
    step = 1.0 if np.all(ratings == np.round(ratings)) else 0.5
    low = min(1.0, math.floor(ratings.min() / step) * step)
    high = max(5.0, math.ceil(ratings.max() / step) * step)
    if (high - low) / step + 1 > MAX_INFERRED_SCALE:
        raise ValueError(
            f"ratings run from {ratings.min():g} to {ratings.max():g}, too wide to "
            f"be a rating scale (at most {MAX_INFERRED_SCALE} values, such as 1-5, "
            "0.5-5 in half stars or 1-10); give the allowed values as rating_scale "
            "(--rating-scale for prisyn report)"
        )
    return np.arange(low, high + step / 2, step)


def _scale_index(ratings: FloatArray, scale: FloatArray) -> IntArray:
    """Index of each rating's scale value, or -1 when it lies off the scale."""
    position = np.searchsorted(scale, ratings)
    lower = np.clip(position - 1, 0, scale.size - 1)
    upper = np.clip(position, 0, scale.size - 1)
    upper_closer = np.abs(scale[upper] - ratings) < np.abs(scale[lower] - ratings)
    nearest = np.where(upper_closer, upper, lower)
    on_scale = np.abs(scale[nearest] - ratings) <= _SCALE_MATCH
    return np.where(on_scale, nearest, -1).astype(np.intp)


def _optional_codes(
    frame: pd.DataFrame, column: str
) -> tuple[IntArray | None, tuple[str, ...]]:
    """Integer codes (-1 for missing) and labels of a categorical column, if present."""
    if column not in frame:
        return None, ()
    codes, labels = pd.factorize(frame[column], sort=True)
    return codes.astype(np.intp), tuple(str(label) for label in labels)


def _timestamp_seconds(frame: pd.DataFrame) -> npt.NDArray[np.int64] | None:
    """Whole unix seconds of each interaction (MovieLens resolution), if timed."""
    if "timestamp" not in frame:
        return None
    column = frame["timestamp"]
    if pd.api.types.is_integer_dtype(column):
        return np.asarray(column, dtype=np.int64)
    if not pd.api.types.is_datetime64_any_dtype(column):
        column = pd.to_datetime(column, utc=True)
    stamps = np.asarray(column.to_numpy(dtype="datetime64[s]"))
    return stamps.astype(np.int64)


def _user_mix(
    user_codes: IntArray, category_codes: IntArray, n_categories: int
) -> _UserMix:
    """Count each user's interactions per category, skipping uncategorised rows."""
    known = category_codes >= 0
    pairs = user_codes[known].astype(np.int64) * n_categories + category_codes[known]
    keys, counts = np.unique(pairs, return_counts=True)
    users = (keys // n_categories).astype(np.intp)
    categories = (keys % n_categories).astype(np.intp)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]).astype(np.intp)
    totals = np.add.reduceat(counts, starts)
    per_entry_total = np.repeat(totals, np.diff(np.r_[starts, users.size]))
    return _UserMix(
        users=users,
        categories=categories,
        counts=counts.astype(np.float64),
        shares=counts / per_entry_total,
        starts=starts,
    )


def _shape_section(log: _InteractionLog, catalog: pd.DataFrame | None) -> ShapeSection:
    """Size and sparsity; coverage of the catalog when one is given."""
    users, items, interactions = log.user_ids.size, log.item_ids.size, log.ratings.size
    pairs = log.user_codes.astype(np.int64) * items + log.item_codes
    catalog_items = catalog_coverage = items_outside = None
    if catalog is not None:
        if "item_id" not in catalog:
            raise ValueError(
                f"item catalog lacks column 'item_id'; it has {list(catalog)}"
            )
        catalog_ids = np.asarray(pd.unique(catalog["item_id"]))
        catalog_items = int(catalog_ids.size)
        if catalog_items:
            catalog_coverage = float(np.isin(catalog_ids, log.item_ids).mean())
        items_outside = int((~np.isin(log.item_ids, catalog_ids)).sum())
    return ShapeSection(
        users=users,
        items=items,
        interactions=interactions,
        density=interactions / (users * items),
        per_user=Quantiles.of(log.user_counts),
        per_item=Quantiles.of(log.item_counts),
        items_with_one_share=float(np.mean(log.item_counts == 1)),
        duplicate_pairs=_repeats(pairs),
        catalog_items=catalog_items,
        catalog_coverage=catalog_coverage,
        items_outside_catalog=items_outside,
    )


def _repeats(keys: npt.NDArray[np.int64]) -> int:
    """How many keys repeat an earlier one (sorting beats hashing on big int arrays)."""
    ordered = np.sort(keys)
    return int(np.count_nonzero(ordered[1:] == ordered[:-1]))


def _rating_section(log: _InteractionLog) -> RatingSection:
    """Star histogram, mean and spread, per user too."""
    shares = star_histogram(log.ratings, log.scale_values)
    squares = np.bincount(log.user_codes, weights=log.ratings**2) / log.user_counts
    within_sd = np.sqrt(np.clip(squares - log.user_means**2, 0.0, None))
    p10, median, p90 = np.percentile(log.user_means, [10, 50, 90])
    return RatingSection(
        scale_values=tuple(float(v) for v in log.scale_values),
        shares=tuple(float(s) for s in shares),
        off_scale_share=float(max(0.0, 1.0 - shares.sum())),
        mean=float(log.ratings.mean()),
        sd=float(log.ratings.std()),
        user_mean_p10=float(p10),
        user_mean_median=float(median),
        user_mean_p90=float(p90),
        within_user_sd_median=float(np.median(within_sd)),
    )


def _popularity_section(log: _InteractionLog) -> PopularitySection:
    """Concentration of interactions on the most popular items and users."""
    return PopularitySection(
        item_gini=gini(log.item_counts),
        top_1pct_share=_top_share(log.item_counts, 0.01),
        top_10pct_share=_top_share(log.item_counts, 0.10),
        top_20pct_share=_top_share(log.item_counts, 0.20),
        user_gini=gini(log.user_counts),
    )


def _top_share(counts: FloatArray, fraction: float) -> float:
    """Share of all interactions on the top fraction of items (at least one item)."""
    top = max(1, math.ceil(fraction * counts.size - 1e-9))
    ranked = np.sort(counts)[::-1]
    return float(ranked[:top].sum() / ranked.sum())


def _second_order_section(log: _InteractionLog) -> SecondOrderSection:
    """Popularity-rating and activity-rating links, taste breadth, session gaps."""
    favourite = entropy = None
    if log.mix is not None:
        favourite = np.maximum.reduceat(log.mix.shares, log.mix.starts)
        surprisal = -log.mix.shares * np.log2(log.mix.shares)
        entropy = np.add.reduceat(surprisal, log.mix.starts)
    under_hour = zero = single_day = None
    if log.seconds is not None:
        under_hour, zero, single_day = _gap_shares(log.user_codes, log.seconds)
    return SecondOrderSection(
        spearman_popularity_rating=spearman(log.item_counts, log.item_means),
        spearman_activity_rating=spearman(log.user_counts, log.user_means),
        favourite_share_p10=_percentile(favourite, 10),
        favourite_share_median=_percentile(favourite, 50),
        favourite_share_p90=_percentile(favourite, 90),
        category_entropy_median_bits=_percentile(entropy, 50),
        gap_under_hour_share=under_hour,
        gap_zero_share=zero,
        single_day_user_share=single_day,
    )


def _gap_shares(
    user_codes: IntArray, seconds: npt.NDArray[np.int64]
) -> tuple[float | None, float | None, float]:
    """Shares of same-user gaps under an hour and of zero; share of one-day users."""
    order = np.lexsort((seconds, user_codes))
    users, times = user_codes[order], seconds[order]
    same_user = users[1:] == users[:-1]
    gaps = np.diff(times)[same_user]
    starts = np.flatnonzero(np.r_[True, ~same_user])
    spans = np.maximum.reduceat(times, starts) - np.minimum.reduceat(times, starts)
    single_day = float(np.mean(spans < _DAY_SECONDS))
    if gaps.size == 0:
        return None, None, single_day
    return float(np.mean(gaps < _HOUR_SECONDS)), float(np.mean(gaps == 0)), single_day


def _percentile(values: FloatArray | None, q: float) -> float | None:
    if values is None or values.size == 0:
        return None
    return float(np.percentile(values, q))


def _profile_section(
    log: _InteractionLog, declared: Mapping[str, Mapping[str, float]] | None
) -> ProfileSection | None:
    """Per-profile mix fidelity and star concentration, plus separability."""
    if log.user_profile is None or not log.profiles:
        return None
    n_profiles, n_stars = len(log.profiles), log.scale_values.size
    row_profile = log.user_profile[log.user_codes]
    known = row_profile >= 0
    users = np.bincount(log.user_profile[log.user_profile >= 0], minlength=n_profiles)
    interactions = np.bincount(row_profile[known], minlength=n_profiles)
    rating_sums = np.bincount(
        row_profile[known], weights=log.ratings[known], minlength=n_profiles
    )
    on_scale = known & (log.scale_index >= 0)
    stars = np.bincount(
        row_profile[on_scale] * n_stars + log.scale_index[on_scale],
        minlength=n_profiles * n_stars,
    ).reshape(n_profiles, n_stars)
    mixes = _profile_mixes(log, row_profile)
    favourite = _favourite_by_profile(log)
    fits = []
    for code, name in enumerate(log.profiles):
        count = max(int(interactions[code]), 1)
        wanted = None if declared is None else declared.get(name)
        observed, declared_mix, divergence = _compare_mix(mixes[code], log, wanted)
        fits.append(
            ProfileFit(
                name=name,
                users=int(users[code]),
                interactions=int(interactions[code]),
                rating_mean=float(rating_sums[code] / count),
                star_max_share=float(stars[code].max() / count),
                favourite_share_median=favourite[code],
                declared_mix=declared_mix,
                observed_mix=observed,
                js_divergence=divergence,
            )
        )
    divergences = [f.js_divergence for f in fits if f.js_divergence is not None]
    return ProfileSection(
        profiles=tuple(fits),
        max_js_divergence=max(divergences) if divergences else None,
        separability=_separability(log),
    )


def _profile_mixes(log: _InteractionLog, row_profile: IntArray) -> FloatArray:
    """Counts of each profile's interactions per category, profiles x categories."""
    n_profiles, n_categories = len(log.profiles), len(log.categories)
    if log.category_codes is None or n_categories == 0:
        return np.zeros((n_profiles, 0))
    keep = (row_profile >= 0) & (log.category_codes >= 0)
    cells = row_profile[keep] * n_categories + log.category_codes[keep]
    counts = np.bincount(cells, minlength=n_profiles * n_categories)
    return counts.reshape(n_profiles, n_categories).astype(np.float64)


def _favourite_by_profile(log: _InteractionLog) -> list[float | None]:
    """Median favourite-category share of each profile's users."""
    if log.mix is None or log.user_profile is None:
        return [None] * len(log.profiles)
    favourite = np.maximum.reduceat(log.mix.shares, log.mix.starts)
    profile = log.user_profile[log.mix.user_index]
    return [
        _percentile(favourite[profile == code], 50) for code in range(len(log.profiles))
    ]


def _compare_mix(
    counts: FloatArray, log: _InteractionLog, wanted: Mapping[str, float] | None
) -> tuple[dict[str, float], dict[str, float] | None, float | None]:
    """Observed mix, normalised declared mix and their JS divergence over the union."""
    total = counts.sum()
    observed = {
        category: float(count / total)
        for category, count in zip(log.categories, counts, strict=True)
        if count > 0
    }
    if wanted is None:
        return observed, None, None
    mass = float(sum(wanted.values()))
    declared_mix = {str(k): float(v) / mass for k, v in wanted.items()} if mass else {}
    union = sorted(set(observed) | set(declared_mix))
    if not observed or not declared_mix:
        return observed, declared_mix, None
    divergence = js_divergence(
        [declared_mix.get(c, 0.0) for c in union], [observed.get(c, 0.0) for c in union]
    )
    return observed, declared_mix, divergence


def _separability(log: _InteractionLog) -> Separability | None:
    """Fit per-profile centroids of category mixes on half the users, score the rest."""
    if log.mix is None or log.user_profile is None or len(log.profiles) < 2:
        return None
    n_profiles, n_categories = len(log.profiles), len(log.categories)
    mix_users = log.mix.user_index
    truth = log.user_profile[mix_users]
    first_half = _alternate_half(truth)
    train = first_half & (truth >= 0)
    test = ~first_half & (truth >= 0)
    if not train.any() or not test.any():
        return None

    entry_user = np.repeat(
        np.arange(mix_users.size), np.diff(np.r_[log.mix.starts, log.mix.users.size])
    )
    entry_profile = truth[entry_user]
    in_train = train[entry_user]
    sums = np.bincount(
        entry_profile[in_train] * n_categories + log.mix.categories[in_train],
        weights=log.mix.shares[in_train],
        minlength=n_profiles * n_categories,
    ).reshape(n_profiles, n_categories)
    fitted = np.bincount(truth[train], minlength=n_profiles)
    centroids = sums / np.maximum(fitted, 1)[:, None]

    dots = np.stack(
        [
            np.bincount(
                entry_user,
                weights=log.mix.shares * centroids[k, log.mix.categories],
                minlength=mix_users.size,
            )
            for k in range(n_profiles)
        ],
        axis=1,
    )
    distances = (centroids**2).sum(axis=1)[None, :] - 2.0 * dots
    distances[:, fitted == 0] = np.inf
    predicted = distances.argmin(axis=1)
    return _score(log.profiles, truth[test], predicted[test], int(train.sum()))


def _alternate_half(profile: IntArray) -> npt.NDArray[np.bool_]:
    """Every other user of each profile, in user-id order, starting with the first."""
    order = np.argsort(profile, kind="stable")
    sorted_profile = profile[order]
    starts = np.flatnonzero(np.r_[True, sorted_profile[1:] != sorted_profile[:-1]])
    rank = np.arange(profile.size) - np.repeat(
        starts, np.diff(np.r_[starts, profile.size])
    )
    chosen = np.empty(profile.size, dtype=bool)
    chosen[order] = rank % 2 == 0
    return chosen


def _score(
    names: tuple[str, ...], truth: IntArray, predicted: IntArray, train_users: int
) -> Separability:
    """Accuracy, majority-class chance, recall and confusion counts."""
    n = len(names)
    matrix = np.bincount(truth * n + predicted, minlength=n * n).reshape(n, n)
    support = matrix.sum(axis=1)
    confusion = {
        names[t]: {names[p]: int(matrix[t, p]) for p in range(n) if matrix[t, p]}
        for t in range(n)
        if support[t]
    }
    recall = {
        names[t]: float(matrix[t, t] / support[t]) for t in range(n) if support[t]
    }
    return Separability(
        accuracy=float(np.trace(matrix) / truth.size),
        chance=float(support.max() / truth.size),
        train_users=train_users,
        test_users=int(truth.size),
        recall=recall,
        confusion=confusion,
    )


def _distribution_pair(
    p: npt.ArrayLike, q: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Two histograms of equal length, each normalised to sum to one."""
    first, second = _distribution(p, "p"), _distribution(q, "q")
    if first.size != second.size:
        raise ValueError(
            f"histograms must have equal lengths, got {first.size} and {second.size}"
        )
    return first, second


def _distribution(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if np.any(array < 0) or not np.all(np.isfinite(array)):
        raise ValueError(f"histogram {name} must hold finite non-negative shares")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"histogram {name} is empty (its shares sum to zero)")
    shares: FloatArray = array / total
    return shares


def _increasing(values: npt.ArrayLike, length: int | None) -> FloatArray:
    """Scale values as floats, checked to be strictly increasing (and of a length)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if length is not None and array.size != length:
        raise ValueError(f"expected {length} scale values, got {array.size}")
    if array.size == 0 or np.any(np.diff(array) <= 0):
        raise ValueError("scale values must be non-empty and strictly increasing")
    return array


def _kl_bits(p: FloatArray, q: FloatArray) -> float:
    mass = p > 0
    return float(np.sum(p[mass] * np.log2(p[mass] / q[mass])))


def _plain(value: Any) -> Any:
    """Turn nested report values into JSON-ready ones (NaN and infinity become None)."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _key(key: Any) -> str:
    return _value_label(key) if isinstance(key, float) else str(key)


def _value_label(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _lookup(data: Mapping[str, Any], path: str) -> float | None:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return None if node is None else float(node)


def _summary_line(report: QualityReport) -> str:
    shape = report.shape
    line = (
        f"{shape.users:,} users x {shape.items:,} items, "
        f"{shape.interactions:,} interactions (density {shape.density:.2%})"
    )
    off = report.ratings.off_scale_share
    if off > 0:
        scale = ", ".join(_value_label(v) for v in report.ratings.scale_values)
        line += (
            f"\n{off:.1%} of ratings are not on the rating scale ({scale}) and "
            "count in no bar of the histogram"
        )
    return line


def _measure_rows(
    report: QualityReport, reference: Reference | None
) -> tuple[list[str], list[list[str]]]:
    """Rows of the numbers table, with targets and verdicts given a reference."""
    if reference is not None:
        header = ["measure", "value", "target", "tolerance", "verdict"]
        rows = [
            [
                row.measure,
                _fmt(row.value),
                _fmt(row.target),
                "-" if row.tolerance is None else f"±{row.tolerance:g}",
                row.verdict,
            ]
            for row in report.comparison(reference)
        ]
        return header, rows
    measures = report._measures()
    ratings = report.ratings
    rows = [
        [f"ratings.share[{_value_label(v)}]", _fmt(s)]
        for v, s in zip(ratings.scale_values, ratings.shares, strict=True)
    ]
    rows += [[path, _fmt(_lookup(measures, path))] for path, _, _ in _COMPARED]
    return ["measure", "value"], rows


def _profile_rows(section: ProfileSection) -> tuple[list[str], list[list[str]]]:
    header = ["profile", "users", "interactions", "JS(declared,observed)"]
    header += ["favourite share", "top star share", "mean rating"]
    rows = [
        [
            fit.name,
            f"{fit.users:,}",
            f"{fit.interactions:,}",
            _fmt(fit.js_divergence),
            _fmt(fit.favourite_share_median),
            _fmt(fit.star_max_share),
            _fmt(fit.rating_mean),
        ]
        for fit in section.profiles
    ]
    return header, rows


def _separability_line(separability: Separability) -> str:
    return (
        f"profile separability: nearest-centroid accuracy {separability.accuracy:.3f} "
        f"(majority chance {separability.chance:.3f}) on "
        f"{separability.test_users:,} held-out users"
    )


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3f}"


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (
            cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)
        )
        return "  ".join([first, *rest]).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _draw_pictures(report: QualityReport, frame: pd.DataFrame) -> dict[str, bytes]:
    """PNG bytes of each picture, by name."""
    figure_type, canvas_type = _matplotlib()

    def png(
        draw: Callable[[Axes], None], size: tuple[float, float] = (6.4, 4.0)
    ) -> bytes:
        figure = figure_type(figsize=size, dpi=100, layout="constrained")
        canvas_type(figure)
        draw(figure.add_subplot())
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    pictures = {
        "rating_histogram": png(lambda ax: _draw_ratings(ax, report)),
        "item_popularity": png(lambda ax: _draw_popularity(ax, frame)),
        "user_activity": png(lambda ax: _draw_activity(ax, frame)),
    }
    mixes = _mix_bars(report, frame)
    if mixes:
        # Room for every bar and for the whole legend, in columns of at most 12.
        categories = len(set().union(*mixes.values()))
        columns = max(1, math.ceil(categories / _LEGEND_ROWS))
        rows = math.ceil(categories / columns)
        height = max(3.0, 0.45 * len(mixes) + 1.5, 0.24 * rows + 1.0)
        width = 8.0 + 1.6 * (columns - 1)
        pictures["category_mix"] = png(
            lambda ax: _draw_mixes(ax, mixes, columns), (width, height)
        )
    return pictures


def _matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
    """The matplotlib classes used for drawing, or a clear error naming the extra."""
    try:
        importlib.import_module("matplotlib")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ReportDependencyError(
            "drawing the prisyn quality report needs matplotlib, which is not "
            f"installed; install it with: {REPORT_EXTRA_HINT}"
        ) from error
    return Figure, FigureCanvasAgg


def _draw_ratings(ax: Axes, report: QualityReport) -> None:
    ratings, reference = report.ratings, report.reference
    values = np.asarray(ratings.scale_values)
    width = 0.4 * (np.diff(values).min() if values.size > 1 else 1.0)
    if reference is not None and reference.star_values:
        ax.bar(values - width / 2, ratings.shares, width, label="this log")
        ax.bar(
            np.asarray(reference.star_values) + width / 2,
            reference.star_shares,
            width,
            label=reference.name,
        )
        ax.legend()
    else:
        ax.bar(values, ratings.shares, 2 * width)
    ax.set_xticks(values, [_value_label(v) for v in values])
    ax.set_xlabel("rating")
    ax.set_ylabel("share of ratings")
    ax.set_title(f"Rating histogram (mean {ratings.mean:.2f}, SD {ratings.sd:.2f})")


def _draw_popularity(ax: Axes, frame: pd.DataFrame) -> None:
    counts = np.sort(frame["item_id"].value_counts().to_numpy())[::-1]
    ax.loglog(np.arange(1, counts.size + 1), counts, marker=".", linestyle="none")
    ax.set_xlabel("item rank")
    ax.set_ylabel("interactions")
    ax.set_title(f"Item popularity (Gini {gini(counts):.2f})")


def _draw_activity(ax: Axes, frame: pd.DataFrame) -> None:
    counts = frame["user_id"].value_counts().to_numpy()
    low, high = float(counts.min()), float(counts.max())
    bins = np.geomspace(low, high, 30) if high > low else np.array([low / 2, low * 2])
    ax.hist(counts, bins=bins.tolist())
    ax.set_xscale("log")
    ticks = [t for t in _one_two_five(high) if low <= t <= high]
    if len(ticks) >= 2:
        ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.set_xlabel("interactions per user (log scale)")
    ax.set_ylabel("users")
    ax.set_title(f"User activity (Gini {gini(counts):.2f})")


def _one_two_five(limit: float) -> list[int]:
    """Round tick values 1, 2, 5, 10, 20, 50, ... reaching past the limit."""
    ticks, decade = [], 1
    while decade <= 2 * limit:
        ticks += [decade, 2 * decade, 5 * decade]
        decade *= 10
    return ticks


def _mix_bars(
    report: QualityReport, frame: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """Category mixes to draw: declared and observed per profile, else the whole log."""
    if report.profiles is not None:
        bars: dict[str, dict[str, float]] = {}
        for fit in report.profiles.profiles:
            if fit.declared_mix is not None:
                bars[f"{fit.name} declared"] = fit.declared_mix
            if fit.observed_mix:
                bars[f"{fit.name} observed"] = fit.observed_mix
        return bars
    if "category" not in frame:
        return {}
    shares = frame["category"].value_counts(normalize=True)
    return {"all users": {str(k): float(v) for k, v in shares.items() if v > 0}}


def _draw_mixes(ax: Axes, bars: dict[str, dict[str, float]], columns: int) -> None:
    totals: dict[str, float] = {}
    for mix in bars.values():
        for category, share in mix.items():
            totals[category] = totals.get(category, 0.0) + share
    categories = sorted(totals, key=lambda c: (-totals[c], c))
    labels = list(bars)[::-1]
    left = np.zeros(len(labels))
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    colours = [palette(i % palette.N) for i in range(len(categories))]
    for category, colour in zip(categories, colours, strict=True):
        widths = np.array([bars[label].get(category, 0.0) for label in labels])
        ax.barh(labels, widths, left=left, color=colour, label=category)
        left += widths
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of interactions")
    ax.set_title("Category mix per profile")
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", ncol=columns
    )


def _top_items(frame: pd.DataFrame, catalog: pd.DataFrame | None) -> list[list[str]]:
    """The ten most interacted-with items, named from the catalog when possible."""
    counts = frame["item_id"].value_counts().head(10)
    names: dict[Any, str] = {}
    if catalog is not None and {"item_id", "name"} <= set(catalog):
        names = dict(zip(catalog["item_id"], catalog["name"].astype(str), strict=True))
    return [
        [str(item), names.get(item, ""), f"{int(count):,}"]
        for item, count in counts.items()
    ]


def _html_page(
    report: QualityReport, pictures: dict[str, bytes], top_items: list[list[str]]
) -> str:
    """One HTML document with every number table and the pictures inlined."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>prisyn quality report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
        ".off{background:#fdd}.ok{background:#dfd}img{max-width:100%}</style>",
        "</head><body>",
        "<h1>prisyn quality report</h1>",
        f"<p>{html.escape(_summary_line(report))}</p>",
    ]
    if report.reference is not None:
        parts.append(f"<h2>Measures against {html.escape(report.reference.name)}</h2>")
    else:
        parts.append("<h2>Measures</h2>")
    parts.append(_html_table(*_measure_rows(report, report.reference)))
    if report.profiles is not None:
        parts.append("<h2>Profiles</h2>")
        parts.append(_html_table(*_profile_rows(report.profiles)))
        if report.profiles.separability is not None:
            line = _separability_line(report.profiles.separability)
            parts.append(f"<p>{html.escape(line)}</p>")
    parts.append("<h2>Pictures</h2>")
    for name, png in pictures.items():
        encoded = base64.b64encode(png).decode("ascii")
        title = html.escape(name.replace("_", " "))
        parts.append(
            f'<figure><img alt="{title}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{title}</figcaption></figure>"
        )
    parts.append("<h2>Most interacted-with items</h2>")
    parts.append(_html_table(["item_id", "name", "interactions"], top_items))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = []
    for row in rows:
        verdict = row[-1] if row and row[-1] in {"ok", "off"} else ""
        cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
        body.append(
            f'<tr class="{verdict}">{cells}</tr>' if verdict else f"<tr>{cells}</tr>"
        )
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
