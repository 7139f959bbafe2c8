"""The embedded simulator: behaviour specs in, interaction logs out, numpy only.

Everything is drawn from random streams keyed by (seed, purpose, block), never
from one shared generator, so the output depends only on the request: the same
users come out the same whether the dataset is made in one piece or in shards.

The model, in the order it runs:

1. Catalog: items are spread over the population's categories (more items where
   more demand is), each with a log-normal popularity and a latent quality that
   correlates with popularity (popular items are rated higher in real logs).
2. Activity: each user's interaction count is a floor plus a log-normal share
   of the rest, summed exactly to the requested total and capped at the catalog.
3. Taste: each user has a favourite category and a personal category mix around
   the profile's declared mix, so users are broad even when they have a favourite.
4. Choice: items are drawn without replacement, weighted by the user's mix and
   the item's popularity (Gumbel top-k for heavy users or small catalogs,
   otherwise rounds of draws from what each user does not hold yet).
5. Rating: an ordered-probit latent score (user leniency + item quality + taste
   for the category + noise) cut at thresholds calibrated so the profile's
   star histogram comes out as declared.
6. Time: interactions come in sessions with short, often same-second gaps
   inside, log-normal gaps between sessions, and a daily rhythm.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pytest_prisyn.errors import RequestError, SpecError
from pytest_prisyn.spec import BehaviorSpec, RatingScale

if TYPE_CHECKING:
    import pandas as pd

BLOCK_USERS = 1024
DENSE_FRACTION = 8
DENSE_CELLS = 1 << 22
TAKEN_CELLS = 1 << 23
REDRAW_ROUNDS = 30
QUICK_REDRAWS = 6
SATURATION_TOLERANCE = 1e-6  # of _saturate's log scale; counts are rounded anyway
USED_UP = 1e-12
CALIBRATION_BLOCKS = 16
CALIBRATION_ROWS = 50_000
CALIBRATION_MIN_ROWS = 1_000
CALIBRATION_TWIN_BLOCKS = 64  # blocks twins may draw in all
QUALITY_WEIGHT = 0.8
FAVOURITE_CONCENTRATION = 12.0
BREADTH_CONCENTRATION = 8.0
# Within a category, items also differ in style (think sub-genre or price tier);
# each user leans to a few styles, which gives the item co-occurrence that
# personalised recommenders learn from.
STYLES = 8
ACTIVITY_LENIENCY = 0.25
STYLE_CONCENTRATION = 0.4
EPOCH_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z: data starts here, always
SESSION_GAP_DAYS = 2.0
# Share of sessions starting in each hour of the day (UTC): quiet nights,
# a lunchtime bump and an evening peak.
DIURNAL = np.array(
    [2, 1, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 6, 5, 4, 4, 5, 6, 7, 8, 9, 9, 7, 4],
    dtype=float,
)

# Users' UTC offsets in hours, and how common each is: the daily rhythm above
# is local time, so a population spread over time zones smears it in UTC.
ZONES = np.array([-8, -7, -6, -5, -4, -3, 0, 1, 2, 3, 5, 8, 9])
ZONE_SHARES = np.array([8, 3, 6, 12, 3, 4, 10, 22, 8, 5, 8, 6, 5], dtype=float)
ZONE_SHARES /= ZONE_SHARES.sum()
# Share of sessions moved to the coming weekend: more activity on Sat/Sun.
WEEKEND_PULL = 0.1

_STREAM_CATALOG = 1
_STREAM_ACTIVITY = 2
_STREAM_ASSIGN = 3
_STREAM_BLOCK = 5
_STREAM_NAMES = 6
_STREAM_TWIN = 7

_SERIES = ("", "Pro", "Lite", "Max", "Mini", "Plus", "Air", "One", "X", "S", "Ultra")
_ADJECTIVES = [
    "Aurora",
    "Bold",
    "Classic",
    "Crimson",
    "Daring",
    "Echo",
    "Golden",
    "Harbor",
    "Iron",
    "Jade",
    "Kinetic",
    "Lumen",
    "Midnight",
    "Nova",
    "Orbit",
    "Polar",
    "Quiet",
    "Royal",
    "Silver",
    "Summit",
    "Tidal",
    "Urban",
    "Velvet",
    "Wild",
    "Zenith",
    "Amber",
    "Cobalt",
    "Ember",
    "Lunar",
    "Prairie",
]


@dataclass(frozen=True)
class Interactions:
    """Column arrays of a simulated dataset, before they become a DataFrame."""

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp_s: np.ndarray
    profile_code: np.ndarray
    category_code: np.ndarray


class Simulator:
    """Generates one request's interactions; build it once, ask for any users."""

    def __init__(
        self,
        *,
        population: Sequence[tuple[str, float]],
        specs: Mapping[str, BehaviorSpec],
        n_users: int,
        n_items: int,
        n_interactions: int,
        seed: int,
        item_names: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.profiles = [name for name, _ in population]
        self.specs = [specs[name] for name in self.profiles]
        self.shares = np.array([share for _, share in population], dtype=float)
        self.n_users = n_users
        self.n_items = n_items
        self.n_interactions = n_interactions
        self.seed = seed
        self.scale = _common_scale(self.profiles, self.specs)

        self._build_catalog(item_names or {})
        self._assign_profiles()
        self._allocate_activity()
        self._prepare_tastes()
        self._calibrate()

    # -- public ----------------------------------------------------------------

    def catalog(self) -> pd.DataFrame:
        """The item catalog: ``item_id``, ``name``, ``category``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "item_id": np.arange(1, self.n_items + 1, dtype=np.int64),
                "name": self.item_names,
                "category": pd.Categorical.from_codes(
                    self.item_category, dtype=pd.CategoricalDtype(self.categories)
                ),
            }
        )

    def frame(self, users: tuple[int, int] | None = None) -> pd.DataFrame:
        """Interactions of users ``[start, stop)`` (0-based), or of everyone."""
        return to_frame(self.arrays(users), self.profiles, self.categories)

    def arrays(self, users: tuple[int, int] | None = None) -> Interactions:
        """Like `frame`, as numpy column arrays filled block by block."""
        start, stop = users if users is not None else (0, self.n_users)
        if not 0 <= start <= stop <= self.n_users:
            raise ValueError(
                f"user range [{start}, {stop}) is outside 0..{self.n_users}"
            )
        offsets = np.concatenate([[0], np.cumsum(self.counts[start:stop])])
        total = int(offsets[-1])
        out = Interactions(
            user_id=np.empty(total, np.int64),
            item_id=np.empty(total, np.int64),
            rating=np.empty(total, np.float64),
            timestamp_s=np.empty(total, np.int64),
            profile_code=np.empty(total, self.user_profile.dtype),
            category_code=np.empty(total, np.int16),
        )
        for block in self._blocks(start, stop):
            first, last = max(block.start, start), min(block.stop, stop)
            # A block's rows come in user order: the wanted users are a slice.
            keep = slice(*np.searchsorted(block.users, [first, last]))
            low = int(offsets[first - start])
            high = int(offsets[last - start])
            np.add(block.users[keep], 1, out=out.user_id[low:high])
            np.add(block.items[keep], 1, out=out.item_id[low:high])
            out.rating[low:high] = block.ratings[keep]
            out.timestamp_s[low:high] = block.times[keep]
            out.profile_code[low:high] = self.user_profile[block.users[keep]]
            out.category_code[low:high] = self.item_category[block.items[keep]]
        return out

    # -- global plan: catalog, profiles, activity -------------------------------

    def _build_catalog(self, item_names: Mapping[str, Sequence[str]]) -> None:
        rng = _rng(self.seed, _STREAM_CATALOG)
        demand: dict[str, float] = {}
        for share, spec in zip(self.shares, self.specs, strict=True):
            for category, weight in spec.mix().items():
                demand[category] = demand.get(category, 0.0) + share * weight
        ranked = sorted(demand, key=lambda name: (-demand[name], name))
        kept = ranked[: self.n_items]
        self.categories = sorted(kept)
        weights = np.array([demand[name] for name in self.categories]) ** 0.75
        per_category = _apportion(self.n_items, weights, floor=1)
        codes = np.repeat(np.arange(len(self.categories)), per_category)
        self.item_category = rng.permutation(codes).astype(np.int16)

        sigma = float(np.dot(self.shares, [s.popularity_sigma for s in self.specs]))
        corr = float(
            np.dot(self.shares, [s.quality_popularity_corr for s in self.specs])
        )
        log_pop = rng.normal(0.0, sigma, self.n_items)
        self.popularity = np.exp(log_pop - log_pop.max())
        z = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
        noise = rng.standard_normal(self.n_items)
        self.quality = corr * z + np.sqrt(max(0.0, 1.0 - corr**2)) * noise
        self.item_style = rng.integers(0, STYLES, self.n_items)

        self.item_names = _name_items(
            self.item_category,
            self.categories,
            item_names,
            _rng(self.seed, _STREAM_NAMES),
        )
        # Items are drawn within a group (category x style) by popularity, from
        # one alias table per group: the groups' slots are laid end to end, each
        # group's in order of popularity.
        n_groups = len(self.categories) * STYLES
        self.item_group = self.item_category.astype(np.int64) * STYLES + self.item_style
        slots = np.lexsort((self.popularity, self.item_group))
        self._group_size = np.bincount(self.item_group, minlength=n_groups)
        self._group_start = np.cumsum(self._group_size) - self._group_size
        self._group_mass = np.bincount(
            self.item_group, weights=self.popularity, minlength=n_groups
        )
        keep, alias = _alias_tables(
            self.popularity[slots], self._group_start, self._group_size
        )
        self._slot_keep = keep
        self._slot_item = slots
        self._alias_item = slots[alias]
        self._item_share = self.popularity / self._group_mass[self.item_group]
        self._quality_score = QUALITY_WEIGHT * self.quality

    def _assign_profiles(self) -> None:
        per_profile = _apportion(self.n_users, self.shares, floor=0)
        empty = [
            name for name, n in zip(self.profiles, per_profile, strict=True) if not n
        ]
        if empty:
            shares = ", ".join(
                f"{name}={share:.3g}"
                for name, share in zip(self.profiles, self.shares, strict=True)
            )
            raise RequestError(
                f"profile(s) {', '.join(empty)} get no users: {self.n_users} users "
                f"split by shares {shares} round to 0 for them; raise n_users or "
                "their share"
            )
        # One byte a user holds up to 127 profiles; more need a wider type.
        small = np.int8 if len(self.profiles) < 128 else np.int32
        codes = np.repeat(np.arange(len(self.profiles)), per_profile).astype(small)
        if len(self.profiles) > 1:
            codes = _rng(self.seed, _STREAM_ASSIGN).permutation(codes)
        self.user_profile = codes

    def _allocate_activity(self) -> None:
        rng = _rng(self.seed, _STREAM_ACTIVITY)
        sigma = np.array([s.activity_sigma for s in self.specs])[self.user_profile]
        floor = np.array([s.min_interactions for s in self.specs])[self.user_profile]
        floor = np.minimum(floor, self.n_items)
        if floor.sum() > self.n_interactions:
            floor = np.minimum(floor, self.n_interactions // self.n_users)
        raw = np.exp(rng.normal(0.0, 1.0, self.n_users) * sigma)
        # Real heavy users stop well short of the whole catalog (MovieLens 100K:
        # 737 of 1,682); cap at half of it unless the total needs more.
        cap = max(-(-self.n_items // 2), -(-self.n_interactions // self.n_users))
        cap = min(cap, self.n_items)
        room = np.maximum(cap - floor, 0)
        extra = self.n_interactions - int(floor.sum())
        spread = _capped_apportion(extra, _saturate(raw, room, extra), room)
        self.counts = (floor + spread).astype(np.int64)
        self._log_activity = float(np.log(self.counts).mean())

    def _prepare_tastes(self) -> None:
        n_categories = len(self.categories)
        index = {name: code for code, name in enumerate(self.categories)}
        self._declared = np.zeros((len(self.specs), n_categories))
        for p, spec in enumerate(self.specs):
            for category, share in spec.mix().items():
                if category in index:
                    self._declared[p, index[category]] = share
            if self._declared[p].sum() == 0:
                self._declared[p] = 1.0
            self._declared[p] /= self._declared[p].sum()
        self._breadth = np.array([_breadth_weights(row) for row in self._declared])

    def _calibrate(self) -> None:
        """Cut each profile's latent scores where its declared star shares say.

        The cut points come from the request's own first blocks, which every
        shard can recompute, so the star histogram lands on the declared one
        and stays shard-independent.
        """
        self._values = np.array(self.scale.values())
        latents: list[list[np.ndarray]] = [[] for _ in self.specs]
        n_blocks = -(-self.n_users // BLOCK_USERS)
        self._drawn: dict[int, _Draw] = {}

        def pool(draw: _Draw) -> None:
            for p in range(len(self.specs)):
                latents[p].append(draw.latent[draw.profiles[draw.local] == p])

        for block in range(min(n_blocks, CALIBRATION_BLOCKS)):
            draw = self._drawn[block] = self._draw_block(block)
            pool(draw)
            if min(sum(map(len, found)) for found in latents) >= CALIBRATION_ROWS:
                break
        # Cut on its own few scores, a small request would get the declared
        # stars exactly, the same multiset for every seed (one row: always
        # the lowest star). Such profiles are calibrated on twins of the
        # blocks as well: the same users drawn again from other streams.
        used = min(n_blocks, CALIBRATION_BLOCKS)
        twin = 0
        while twin < CALIBRATION_TWIN_BLOCKS // used and (
            min(sum(map(len, found)) for found in latents) < CALIBRATION_MIN_ROWS
        ):
            twin += 1
            for block in range(used):
                pool(self._draw_block(block, twin))
        self._thresholds = []
        for p, spec in enumerate(self.specs):
            cumulative = np.cumsum(spec.star_probabilities())[:-1]
            pooled = np.concatenate(latents[p])
            if not len(pooled):
                pooled = np.zeros(1)
            self._thresholds.append(np.quantile(pooled, cumulative))

    # -- per block ---------------------------------------------------------------

    def _blocks(self, start: int, stop: int) -> Iterator[_Block]:
        for block in range(start // BLOCK_USERS, -(-stop // BLOCK_USERS)):
            yield self._block(block)

    def _draw_block(self, block: int, twin: int = 0) -> _Draw:
        """Draw a block's users' items and scores; a twin draws them anew."""
        if twin:
            rng = _rng(self.seed, _STREAM_TWIN, block, twin)
        else:
            rng = _rng(self.seed, _STREAM_BLOCK, block)
        first = block * BLOCK_USERS
        last = min(first + BLOCK_USERS, self.n_users)
        profiles = self.user_profile[first:last]
        taste = self._tastes(rng, profiles)
        counts = self.counts[first:last]
        # Heavy users reach further into the long tail of weaker items; real
        # logs show no such drop in their mean rating (MovieLens 100K: Spearman
        # of activity and mean rating -0.06), so they are a little more lenient.
        taste.bias[:] += ACTIVITY_LENIENCY * (np.log(counts) - self._log_activity)
        local, items = self._choose(rng, taste, counts)
        latent = self._latent(rng, taste, local, items, profiles)
        return _Draw(rng, first, last, profiles, counts, local, items, latent)

    def _block(self, block: int) -> _Block:
        # Blocks drawn for calibration are used once more, not drawn again.
        draw = self._drawn.pop(block, None) or self._draw_block(block)
        order, times = self._timeline(draw.rng, draw.local, draw.counts, draw.profiles)
        local = draw.local[order]
        return _Block(
            start=draw.first,
            stop=draw.last,
            users=draw.first + local,
            items=draw.items[order],
            ratings=self._rate(draw.latent[order], draw.profiles[local]),
            times=times,
        )

    def _rate(self, latent: np.ndarray, row_profiles: np.ndarray) -> np.ndarray:
        """Stars: each profile's latent scores cut at its calibrated thresholds."""
        if len(self._thresholds) == 1:
            return self._values[np.searchsorted(self._thresholds[0], latent)]
        ratings = np.empty(len(latent))
        for p, thresholds in enumerate(self._thresholds):
            rows = row_profiles == p
            ratings[rows] = self._values[np.searchsorted(thresholds, latent[rows])]
        return ratings

    def _tastes(self, rng: np.random.Generator, profiles: np.ndarray) -> _Tastes:
        """Each user's category mix, style preferences and rating leniency."""
        n = len(profiles)
        declared = self._declared[profiles]
        breadth = self._breadth[profiles]
        favourite = _draw_categories(rng, declared)
        target = np.array([s.favourite_share for s in self.specs])[profiles]
        strength = rng.beta(
            target * FAVOURITE_CONCENTRATION, (1 - target) * FAVOURITE_CONCENTRATION
        )
        rest = rng.gamma(np.maximum(breadth * BREADTH_CONCENTRATION, 1e-9))
        rest *= breadth > 0
        rest[np.arange(n), favourite] = 0.0
        totals = rest.sum(axis=1, keepdims=True)
        alone = totals[:, 0] == 0
        rest = np.divide(rest, totals, out=np.zeros_like(rest), where=totals > 0)
        mix = rest * (1 - strength)[:, None]
        mix[np.arange(n), favourite] += np.where(alone, 1.0, strength)
        bias_sd = np.array([s.user_bias_sd for s in self.specs])[profiles]
        bias = rng.standard_normal(n) * bias_sd
        style = rng.gamma(STYLE_CONCENTRATION, size=(n, STYLES))
        style /= style.sum(axis=1, keepdims=True)

        # A user's share of category c goes to its styles in proportion to
        # (taste for the style) x (popularity mass of the style's items in c).
        mass = self._group_mass.reshape(len(self.categories), STYLES)
        within = (style + 1e-12)[:, None, :] * mass[None, :, :]
        within /= within.sum(axis=2, keepdims=True)
        groups = (mix[:, :, None] * within).reshape(n, -1)
        return _Tastes(mix=mix, style=style, bias=bias, groups=groups)

    def _choose(
        self, rng: np.random.Generator, tastes: _Tastes, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pick each user's distinct items; return (local user index, item) rows."""
        dense = counts * DENSE_FRACTION >= self.n_items
        dense_users = np.flatnonzero(dense)
        sparse_users = np.flatnonzero(~dense)
        local_d, items_d = self._gumbel_top(
            rng, tastes.groups[dense_users], counts[dense_users]
        )
        local_s, items_s = self._choose_sparse(
            rng, tastes.groups[sparse_users], counts[sparse_users]
        )
        return (
            np.concatenate([dense_users[local_d], sparse_users[local_s]]),
            np.concatenate([items_d, items_s]),
        )

    def _gumbel_top(
        self,
        rng: np.random.Generator,
        groups: np.ndarray,
        wanted: np.ndarray,
        held: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``wanted[u]`` distinct items for each user u of `groups`, skipping `held`.

        The k largest of log(weight) + Gumbel noise (equivalently of
        weight / Exp(1)) are a sample of k distinct items drawn one after
        another in proportion to weight. `held` marks (user, item) cells of
        items a user already has.
        """
        batch = max(1, DENSE_CELLS // self.n_items)
        local_parts, item_parts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for lo in range(0, len(wanted), batch):
            hi = min(lo + batch, len(wanted))
            weights = (groups[lo:hi, self.item_group] + 1e-7) * self._item_share
            keys = -weights / rng.standard_exponential(size=weights.shape)
            if held is not None:
                keys[held[lo:hi]] = np.inf
            top = int(wanted[lo:hi].max(initial=0))
            if top < self.n_items:
                best = np.argpartition(keys, top - 1, axis=1)[:, :top]
            else:
                best = np.broadcast_to(np.arange(self.n_items), keys.shape)
            order = np.argsort(np.take_along_axis(keys, best, axis=1), axis=1)
            ranked = np.take_along_axis(best, order, axis=1)
            take = np.arange(top)[None, :] < wanted[lo:hi, None]
            local_parts.append(lo + np.nonzero(take)[0])
            item_parts.append(ranked[take])
        return np.concatenate(local_parts), np.concatenate(item_parts)

    def _choose_sparse(
        self, rng: np.random.Generator, groups: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distinct items for light users, a chunk of users at a time."""
        chunk = max(1, TAKEN_CELLS // self.n_items)
        parts = [np.zeros(0, np.int64)]
        for lo in range(0, len(counts), chunk):
            hi = min(lo + chunk, len(counts))
            keys = self._distinct_keys(rng, groups[lo:hi], counts[lo:hi])
            parts.append(keys + lo * self.n_items)
        keys = np.concatenate(parts)
        local = keys // self.n_items
        return local, keys - local * self.n_items

    def _distinct_keys(
        self, rng: np.random.Generator, groups: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """``user * n_items + item`` keys, ``counts[user]`` per user.

        Each round draws every missing item from what the user does not hold
        yet (group by remaining taste, then item by popularity) and keeps the
        first draw of each item; the rest are drawn again next round. That is
        drawing without replacement, one item after another. Users left with
        nothing to draw from (only zero-weight items) finish with a dense draw.
        """
        n_users, n_groups = groups.shape
        taken = np.zeros(n_users * self.n_items, dtype=bool)
        # Per (user, group): the share of the group's popularity not taken yet.
        left = np.ones(n_users * n_groups)
        found = [np.zeros(0, np.int64)]
        need = counts.copy()
        users = np.flatnonzero(need)
        mass = groups[users]
        for _ in range(REDRAW_ROUNDS):
            if not len(users):
                break
            picks = np.repeat(np.arange(len(users)), need[users])
            group = _GroupSampler(mass)(rng, picks)
            rows = users[picks]
            items = self._draw_items(group, rng.random(len(rows)))
            keys = rows * self.n_items + items
            if len(found) > 1:
                keys = self._redraw_held(rng, taken, keys, rows, group)
            keys = _distinct(keys)
            taken[keys] = True
            found.append(keys)
            rows = keys // self.n_items
            items = keys - rows * self.n_items
            cells = rows * n_groups + self.item_group[items]
            np.subtract.at(left, cells, self._item_share[items])
            # What rounding leaves of a used-up group is zero.
            left[cells[left[cells] < USED_UP]] = 0.0
            need -= np.bincount(rows, minlength=n_users)
            users = np.flatnonzero(need)
            mass = groups[users] * left.reshape(n_users, n_groups)[users]
            drawable = mass.sum(axis=1) > 0
            users, mass = users[drawable], mass[drawable]
        users = np.flatnonzero(need)
        if len(users):
            have = taken.reshape(n_users, self.n_items)[users]
            local, items = self._gumbel_top(rng, groups[users], need[users], have)
            found.append(users[local] * self.n_items + items)
        return np.concatenate(found)

    def _redraw_held(
        self,
        rng: np.random.Generator,
        taken: np.ndarray,
        keys: np.ndarray,
        users: np.ndarray,
        groups: np.ndarray,
    ) -> np.ndarray:
        """`keys` with items the user holds drawn again from the same group.

        Rows come sorted by (user, group). A held item is drawn again a few
        times; rows still unlucky (their group is nearly used up) draw from
        the group's remaining items directly.
        """
        again = np.flatnonzero(taken[keys])
        for _ in range(QUICK_REDRAWS):
            if not len(again):
                return keys
            items = self._draw_items(groups[again], rng.random(len(again)))
            keys[again] = users[again] * self.n_items + items
            again = again[taken[keys[again]]]
        if not len(again):
            return keys
        items = self._draw_remaining(rng, taken, users[again], groups[again])
        keys[again] = users[again] * self.n_items + items
        # Rounding can still leave a held item: that row draws next round.
        return np.delete(keys, again[taken[keys[again]]])

    def _draw_remaining(
        self,
        rng: np.random.Generator,
        taken: np.ndarray,
        users: np.ndarray,
        groups: np.ndarray,
    ) -> np.ndarray:
        """An item per row from a cumulative of its (user, group)'s free items."""
        pair = np.ones(len(users), dtype=bool)
        pair[1:] = (users[1:] != users[:-1]) | (groups[1:] != groups[:-1])
        pair_of_row = np.cumsum(pair) - 1
        size = self._group_size[groups[pair]]
        cell_pair = np.repeat(np.arange(len(size)), size)
        first = np.cumsum(size) - size
        slot = (self._group_start[groups[pair]] - first)[cell_pair] + np.arange(
            len(cell_pair)
        )
        cell_item = self._slot_item[slot]
        free = ~taken[users[pair][cell_pair] * self.n_items + cell_item]
        cumulative = np.cumsum(self.popularity[cell_item] * free)
        last = first + size - 1
        before = np.concatenate([[0.0], cumulative])[first]
        target = (
            before[pair_of_row]
            + rng.random(len(users)) * (cumulative[last] - before)[pair_of_row]
        )
        position = np.searchsorted(cumulative, target, side="right")
        return cell_item[np.minimum(position, last[pair_of_row])]

    def _draw_items(self, groups: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """One item per row from its group, in proportion to popularity."""
        # With uniforms below 1, slot stays below the group's size.
        slot = uniforms * self._group_size[groups]
        whole = slot.astype(np.int64)
        position = self._group_start[groups] + whole
        stays = slot - whole < self._slot_keep[position]
        return np.where(stays, self._slot_item[position], self._alias_item[position])

    def _latent(
        self,
        rng: np.random.Generator,
        tastes: _Tastes,
        users: np.ndarray,
        items: np.ndarray,
        profiles: np.ndarray,
    ) -> np.ndarray:
        """Ordered-probit scores: leniency + quality + taste + noise."""
        # Leniency and taste depend on the user and the item's group only, so
        # they are worked out per (user, group) and looked up per row.
        taste_weight = np.array([s.taste_weight for s in self.specs])[profiles]
        declared = np.maximum(self._declared.mean(axis=0), 1e-6)
        for_category = np.log(np.maximum(tastes.mix, 1e-6) / declared)
        for_style = np.log(tastes.style * STYLES)
        taste = (
            np.clip(for_category, -2, 2)[:, :, None]
            + 0.5 * np.clip(for_style, -2, 2)[:, None, :]
        ).reshape(len(profiles), -1)
        per_group = tastes.bias[:, None] + taste_weight[:, None] * taste
        n_groups = per_group.shape[1]
        return (
            per_group.ravel()[users * n_groups + self.item_group[items]]
            + self._quality_score[items]
            + rng.standard_normal(len(items))
        )

    def _timeline(
        self,
        rng: np.random.Generator,
        local: np.ndarray,
        counts: np.ndarray,
        profiles: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows in order of user, then time, and their Unix seconds.

        Each user's rows, in random order, fill the user's sessions in turn:
        sessions follow each other at log-normal gaps with a daily rhythm, and
        a session's rows come seconds apart (often in the same second).
        """
        n_users = len(counts)
        size = np.array([s.session_size for s in self.specs])[profiles]
        gap = np.array([s.session_gap_seconds for s in self.specs])[profiles]
        same = np.array([s.same_second_share for s in self.specs])[profiles]
        span = np.array([s.span_days for s in self.specs])[profiles] * 86_400.0

        sessions = 1 + rng.binomial(np.maximum(counts - 1, 0), 1.0 / size)
        session_base = np.cumsum(sessions) - sessions
        n_sessions = int(sessions.sum())
        shuffled = _shuffle_within(rng, local)
        # Shuffled, the rows come user by user: user u's counts[u] rows, so
        # per-user values are repeated rather than looked up row by row.
        # A session's size is how many of its user's rows pick it at random.
        picks = (rng.random(len(local)) * np.repeat(sessions, counts)).astype(np.int64)
        picks += np.repeat(session_base, counts)
        session_size = np.bincount(picks, minlength=n_sessions)

        session_user = np.repeat(np.arange(n_users), sessions)
        between = rng.lognormal(np.log(SESSION_GAP_DAYS * 86_400.0), 1.2, n_sessions)
        between[session_base] = 0.0
        offset = _segment_cumsum(between, session_base, sessions)
        # Every user's timeline fits the profile's span (less two days: the
        # last session's hour of day and its length): long ones are
        # compressed, short ones placed anywhere in it.
        room = np.maximum(span - 2 * 86_400.0, 0.0)
        last = offset[session_base + sessions - 1]
        squeeze = np.where(last > room, room / np.maximum(last, 1.0), 1.0)
        offset *= squeeze[session_user]
        start = rng.random(n_users) * np.maximum(room - last * squeeze, 0.0)
        day = np.floor((start[session_user] + offset) / 86_400.0)
        day = _towards_weekends(rng, day, np.repeat(room // 86_400.0, sessions))
        local_hour = rng.choice(24, size=n_sessions, p=DIURNAL / DIURNAL.sum())
        zone = rng.choice(ZONES, size=n_users, p=ZONE_SHARES)[session_user]
        hour = (local_hour - zone) % 24
        session_start = day * 86_400.0 + hour * 3600.0 + rng.random(n_sessions) * 3600.0

        steps = np.ceil(rng.standard_exponential(len(local)) * np.repeat(gap, counts))
        steps[rng.random(len(local)) < np.repeat(same, counts)] = 0.0
        # A row's time is its session's start plus the steps since the
        # session's first row.
        elapsed = np.cumsum(steps)
        used = session_size > 0
        first_row = (np.cumsum(session_size) - session_size)[used]
        seconds = elapsed + np.repeat(
            session_start[used] - elapsed[first_row], session_size[used]
        )
        # Rows come user by user here too. A spec at its limits (a one-day
        # span, minutes between clicks) can run past the span's end: such a
        # user's times are squeezed back into it.
        active = np.flatnonzero(counts)
        latest = np.zeros(n_users)
        if len(active):
            first_of_user = (np.cumsum(counts) - counts)[active]
            latest[active] = np.maximum.reduceat(seconds, first_of_user)
        end = span - 1.0
        if np.any(latest > end):
            squeeze = np.where(latest > end, end / np.maximum(latest, 1.0), 1.0)
            seconds *= np.repeat(squeeze, counts)
        # The shuffled rows take their user's times in time order: a random
        # row order either way, and sorting values is cheaper than an argsort
        # (sessions mostly come in time order already, so it has little to do).
        user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
        times = np.sort(user << 40 | seconds.astype(np.int64), kind="stable")
        times &= (1 << 40) - 1
        return shuffled, EPOCH_SECONDS + times


@dataclass(frozen=True)
class _Tastes:
    """A block's users: category mix, style preferences, leniency, group mix.

    ``groups[u, c * STYLES + s]`` is user u's probability of group (c, s).
    """

    mix: np.ndarray
    style: np.ndarray
    bias: np.ndarray
    groups: np.ndarray


class _GroupSampler:
    """Draws a group per row in proportion to its user's (unnormalised) masses.

    The users' masses laid end to end make one cumulative line; a single
    searchsorted then draws every row.
    """

    def __init__(self, mass: np.ndarray) -> None:
        n_users, n_groups = mass.shape
        self.line = np.cumsum(mass.ravel())
        ends = self.line[n_groups - 1 :: n_groups]
        self.start = np.concatenate([[0.0], ends[:-1]])
        self.total = ends - self.start
        self.n_groups = n_groups
        # Rounding can put a point at its user's very end; it then counts
        # for the user's last group with any mass.
        self.last = (
            np.arange(n_users) * n_groups
            + n_groups
            - 1
            - np.argmax(mass[:, ::-1] > 0, axis=1)
        )

    def __call__(self, rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
        # Rows come grouped by user, so sorting the points keeps each on its
        # user's stretch; sorted points make the search fast.
        points = np.sort(self.start[rows] + rng.random(len(rows)) * self.total[rows])
        position = np.searchsorted(self.line, points, side="right")
        position = np.minimum(position, self.last[rows])
        return position - rows * self.n_groups


@dataclass(frozen=True)
class _Draw:
    """A block's users, their chosen items and latent scores, before rating."""

    rng: np.random.Generator
    first: int
    last: int
    profiles: np.ndarray
    counts: np.ndarray
    local: np.ndarray
    items: np.ndarray
    latent: np.ndarray


@dataclass(frozen=True)
class _Block:
    start: int
    stop: int
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    times: np.ndarray


def to_frame(
    arrays: Interactions, profiles: Sequence[str], categories: Sequence[str]
) -> pd.DataFrame:
    """Wrap column arrays as the documented interactions DataFrame."""
    import pandas as pd

    timestamps = pd.DatetimeIndex(
        (arrays.timestamp_s * 1_000_000_000).view("M8[ns]")
    ).tz_localize("UTC")
    return pd.DataFrame(
        {
            "user_id": arrays.user_id,
            "item_id": arrays.item_id,
            "rating": arrays.rating,
            "timestamp": timestamps,
            "profile": pd.Categorical.from_codes(
                arrays.profile_code, dtype=pd.CategoricalDtype(list(profiles))
            ),
            "category": pd.Categorical.from_codes(
                arrays.category_code, dtype=pd.CategoricalDtype(list(categories))
            ),
        }
    )


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=stream))
    )


def _common_scale(
    profiles: Sequence[str], specs: Sequence[BehaviorSpec]
) -> RatingScale:
    scales = {spec.rating_scale for spec in specs}
    if len(scales) > 1:
        described = ", ".join(
            f"{name}: {spec.rating_scale.low}..{spec.rating_scale.high} "
            f"step {spec.rating_scale.step}"
            for name, spec in zip(profiles, specs, strict=True)
        )
        raise SpecError(
            f"profiles in one dataset must share a rating scale; got {described}"
        )
    return specs[0].rating_scale


def _apportion(total: int, weights: np.ndarray, *, floor: int) -> np.ndarray:
    """Split `total` into integers proportional to `weights` (largest remainder)."""
    n = len(weights)
    base = np.full(n, floor if total >= floor * n else 0, dtype=np.int64)
    spare = total - int(base.sum())
    exact = spare * weights / weights.sum()
    whole = np.floor(exact).astype(np.int64)
    remainder = spare - int(whole.sum())
    order = np.lexsort((np.arange(n), -(exact - whole)))
    whole[order[:remainder]] += 1
    return base + whole


def _saturate(weights: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
    """Shares of `total` that bend smoothly below `caps` instead of piling at them.

    Scaled weights x become x / (1 + (x / cap)^4)^(1/4), the scale found so
    that they sum to `total`: light and middling users keep their proportions,
    heavy ones spread out below the cap as real heavy users do, where clipping
    would stack every heavy user on the same count. (A power of 2 bends
    middling users too and weakens what item-kNN can learn from heavy users.)
    When the caps leave too little room for that, the weights are returned as
    they are, to be clipped.
    """

    open_caps = caps > 0
    inverse_caps = np.divide(1.0, caps, out=np.zeros(len(caps)), where=open_caps)

    def bent(log_scale: float) -> np.ndarray:
        x = np.exp(log_scale) * weights
        ratio = np.square(np.square(x * inverse_caps))  # (x / cap)^4
        return np.where(open_caps, x / np.sqrt(np.sqrt(1.0 + ratio)), 0.0)

    open_weight = float(weights[open_caps].sum())
    if total <= 0 or open_weight <= 0:
        return weights
    # Bending only lowers a value, so the scale is at least total / weight;
    # widen the bracket upwards until it holds the answer (or give up).
    low = high = math.log(total / open_weight)
    step = 0.5
    while bent(high).sum() < total:
        if step > 64:
            return weights
        low, high, step = high, high + step, step * 2
    while high - low > SATURATION_TOLERANCE:
        middle = (low + high) / 2
        if bent(middle).sum() > total:
            high = middle
        else:
            low = middle
    return bent(high)


def _capped_apportion(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split `total` proportionally to `weights` without exceeding `caps`."""
    share = np.zeros(len(weights))
    free = caps > 0
    left = float(total)
    while left > 1e-9 and free.any():
        add = left * weights * free / (weights * free).sum()
        share = np.minimum(share + add, caps)
        left = total - share.sum()
        free = share < caps
    whole = np.minimum(np.floor(share), caps).astype(np.int64)
    missing = total - int(whole.sum())
    room = whole < caps
    order = np.lexsort((np.arange(len(weights)), -(share - whole), ~room))
    whole[order[:missing]] += 1
    return whole


def _breadth_weights(declared: np.ndarray) -> np.ndarray:
    """Weights for a user's non-favourite categories that keep the profile's mix.

    With the favourite drawn in proportion to the declared mix and the rest of
    the attention spread by these weights, the population's average mix comes
    out at the declared one (a short fixed-point iteration).
    """
    weights = declared.copy()
    for _ in range(30):
        # For each category c, the sum over the others c' of
        # declared[c'] / (1 - weights[c']).
        each = declared / np.maximum(1 - weights, 1e-9)
        spread = each.sum() - each
        target = np.where(spread > 0, declared / np.maximum(spread, 1e-12), 0.0)
        if target.sum() == 0:
            return declared.copy()
        weights = target / target.sum()
    return weights


def _draw_categories(
    rng: np.random.Generator, mix: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """One category per row: from ``mix[rows[k]]`` for each k (or each row of mix)."""
    if rows is None:
        rows = np.arange(len(mix))
    n_users, n_categories = mix.shape
    cumulative = np.cumsum(mix, axis=1)
    cumulative /= cumulative[:, -1:]
    # Offsetting user u's cumulative mix by u lays all users on one sorted line,
    # so a single searchsorted draws every row without a rows x categories array.
    line = (cumulative + np.arange(n_users)[:, None]).ravel()
    position = np.searchsorted(line, rows + rng.random(len(rows)), side="right")
    return np.minimum(position - rows * n_categories, n_categories - 1)


def _alias_tables(
    weights: np.ndarray, start: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias tables for segments of `weights`, each sorted ascending.

    Segment s is ``weights[start[s]:start[s] + size[s]]``. A draw picks a slot
    of its segment uniformly and keeps it with probability ``keep[slot]``,
    else takes ``alias[slot]``: slots come out in proportion to weight.
    The segments are filled side by side, poorest slot first, each topped up
    from the segment's richest slot.
    """
    segment = np.repeat(np.arange(len(size)), size)
    totals = np.bincount(segment, weights=weights, minlength=len(size))
    scaled = weights * (size / np.where(size > 0, totals, 1.0))[segment]
    keep = np.ones(len(weights))
    alias = np.arange(len(weights))
    low = start.copy()
    high = start + size - 1
    live = np.flatnonzero(size > 1)
    while len(live):
        lo, hi = low[live], high[live]
        rich = scaled[hi] >= 1.0
        poor = np.where(rich, lo, hi)
        donor = np.where(rich, hi, hi - 1)
        keep[poor] = scaled[poor]
        alias[poor] = donor
        scaled[donor] -= 1.0 - scaled[poor]
        low[live] = lo + rich
        high[live] = hi - ~rich
        live = live[low[live] < high[live]]
    return keep, alias


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of `keys`, sorted."""
    keys = np.sort(keys)
    new = np.ones(len(keys), dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return keys[new]


def _shuffle_within(rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
    """Row indices sorted by group, in random order within each group.

    One sort of packed keys (group, random bits, row), cheaper than an argsort;
    a block's rows and users leave at least 16 bits for the random part.
    """
    row_bits = max(len(groups) - 1, 1).bit_length()
    group_bits = int(groups.max(initial=0)).bit_length()
    noise_bits = 63 - row_bits - group_bits
    keys = groups.astype(np.int64) << noise_bits
    keys |= rng.integers(0, 1 << noise_bits, len(groups))
    keys <<= row_bits
    keys |= np.arange(len(groups))
    keys.sort()
    return keys & ((1 << row_bits) - 1)


def _towards_weekends(
    rng: np.random.Generator, day: np.ndarray, last_day: np.ndarray
) -> np.ndarray:
    """Move some sessions to the next Saturday or Sunday (day 0 is a Monday)."""
    pulled = np.flatnonzero(rng.random(len(day)) < WEEKEND_PULL)
    weekday = day[pulled] % 7
    to_weekend = 5 - weekday + rng.integers(0, 2, len(pulled))
    moved = day[pulled] + np.where(weekday >= 5, 0, to_weekend)
    fits = moved <= last_day[pulled]
    day[pulled[fits]] = moved[fits]
    return day


def _segment_cumsum(
    values: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    total = np.cumsum(values)
    before = np.repeat(total[starts] - values[starts], lengths)
    return total - before


def _name_items(
    item_category: np.ndarray,
    categories: Sequence[str],
    given: Mapping[str, Sequence[str]],
    rng: np.random.Generator,
) -> list[str]:
    """Readable, unique item names: Gemini's where given, invented otherwise."""
    used: dict[str, int] = {}
    names: list[str] = []
    adjectives = [str(word) for word in rng.permutation(_ADJECTIVES)]
    for code in item_category:
        category = categories[code]
        pool = given.get(category, ())
        seen = used.get(category, 0)
        used[category] = seen + 1
        if seen < len(pool):
            names.append(pool[seen])
            continue
        names.append(_invented_name(category, seen - len(pool), adjectives))
    return names


def _invented_name(category: str, index: int, adjectives: Sequence[str]) -> str:
    """The index-th name of a category: "Amber Laptops", "Amber Laptops Pro", ...

    Adjective x series gives each category 330 distinct names before a
    number has to tell two apart.
    """
    noun = category.replace("-", " ").title()
    adjective = adjectives[index % len(adjectives)]
    round_ = index // len(adjectives)
    series = _SERIES[round_ % len(_SERIES)]
    name = f"{adjective} {noun} {series}".rstrip()
    edition = round_ // len(_SERIES)
    return f"{name} {edition + 1}" if edition else name
