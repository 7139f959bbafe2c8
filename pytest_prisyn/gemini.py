"""The Gemini backend: behaviour specs and interaction rows written by Google Gemini.

Two modes share one calling path. Spec mode asks for a behaviour spec (plus item
names) that the simulator then turns into data; rows mode asks Gemini to write
the interactions themselves, following the simulator's plan (who has how many
interactions, which items exist). Every answer is parsed and checked here, never
trusted: ``response.parsed`` is silently ``None`` on bad JSON or truncation.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from pytest_prisyn.errors import GenerationError, SpecError
from pytest_prisyn.simulate import EPOCH_SECONDS
from pytest_prisyn.spec import BehaviorSpec, RatingScale, build_spec, slugify

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

    from pytest_prisyn.profiles import Profile
    from pytest_prisyn.simulate import Simulator

__all__ = [
    "RowsAnswer",
    "SpecAnswer",
    "SpecReply",
    "Usage",
    "make_client",
    "rows_schema",
    "spec_schema",
    "write_rows",
    "write_spec",
]

logger = logging.getLogger("pytest_prisyn")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Finish reasons that mean "the model will not say this", so asking again is futile.
POLICY_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MODEL_ARMOR",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
SPEC_TEMPERATURE = 0.4
SPEC_MAX_OUTPUT_TOKENS = 8192
ROWS_TEMPERATURE = 0.7
TOKENS_PER_ROW = 64
ROWS_BASE_TOKENS = 1024
MAX_PROMPT_ITEMS = 400
MAX_FEEDBACK_ROWS = 12
MAX_TAKEN_PAIRS = 2000
ITEM_NAMES_PER_CATEGORY = 60
MAX_API_TEXT = 300
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")


def make_client(
    api_key: str, *, timeout_s: float = 120.0, base_url: str | None = None
) -> genai.Client:
    """Build a google-genai client with a timeout and, if given, an endpoint."""
    from google import genai
    from google.genai import types

    options = types.HttpOptions(timeout=int(timeout_s * 1000))
    if base_url is not None:
        # Only when given: otherwise GOOGLE_GEMINI_BASE_URL keeps working.
        options.base_url = base_url
    return genai.Client(api_key=api_key, http_options=options)


@dataclass
class Usage:
    """Calls and tokens spent on Gemini, and the model versions that answered."""

    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    model_versions: list[str] = field(default_factory=list)

    def add(self, response: types.GenerateContentResponse) -> None:
        """Count one answered call."""
        self.calls += 1
        meta = response.usage_metadata
        if meta is not None:
            self.prompt_tokens += meta.prompt_token_count or 0
            self.output_tokens += meta.candidates_token_count or 0
            self.thinking_tokens += meta.thoughts_token_count or 0
        version = response.model_version
        if version and version not in self.model_versions:
            self.model_versions = sorted([*self.model_versions, version])

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as plain JSON-ready data."""
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "thinking_tokens": self.thinking_tokens,
            "model_versions": list(self.model_versions),
        }


# -- spec mode ---------------------------------------------------------------------
# The docstrings and field descriptions of the reply models below are sent to
# Gemini as part of the response schema: they are written for the model.


class CategoryReply(BaseModel):
    """One item category these users interact with, its weight and example items."""

    category: str = Field(
        description="lower-case slug of 1-40 letters, digits or '-', e.g. 'smart-home'"
    )
    weight: float = Field(
        description="relative share of this population's interactions, above 0"
    )
    example_items: list[str] = Field(
        description="20 to 40 distinct, real-sounding names of items in this category"
    )


class SpecReply(BaseModel):
    """How one population of users chooses, rates and times its interactions."""

    categories: list[CategoryReply] = Field(
        description="6 to 15 categories these users interact with, with weights"
    )
    star_shares: list[float] = Field(
        description="share of ratings on each rating-scale value, lowest rating first"
    )
    favourite_share: float = Field(
        description="typical share of a user's interactions in their favourite "
        "category, 0.05 to 0.95"
    )
    min_interactions: int = Field(
        description="fewest interactions any user has, at least 1"
    )
    activity_sigma: float = Field(
        description="log-normal spread of user activity above the minimum, 0.1 to 3"
    )
    popularity_sigma: float = Field(
        description="log-normal spread of item popularity, 0.1 to 3"
    )
    quality_popularity_corr: float = Field(
        description="correlation between an item's popularity and its quality, -1 to 1"
    )
    taste_weight: float = Field(
        description="how much more users like items of the categories they favour, "
        "0 to 3"
    )
    user_bias_sd: float = Field(
        description="spread of users' personal rating leniency, 0 to 3"
    )
    session_size: float = Field(
        description="mean number of interactions in one session, at least 1"
    )
    session_gap_seconds: float = Field(
        description="mean gap between two interactions inside a session, in seconds"
    )
    same_second_share: float = Field(
        description="share of in-session interactions in the same second as the "
        "previous one, 0 to 0.95"
    )
    span_days: int = Field(
        description="length of the whole timeline in days, 1 to 3650"
    )


@dataclass(frozen=True)
class SpecAnswer:
    """A behaviour spec written by Gemini and item names per category."""

    spec: BehaviorSpec
    item_names: dict[str, list[str]]


SPEC_INSTRUCTION = """\
You write behaviour specs for pytest-prisyn, which simulates the users of a \
recommender system so that recommender code can be tested on realistic data.

You get the description of one population of users. Fill in every field of the \
JSON schema with the numbers you would measure in a real interaction log of such \
users (think of MovieLens, Amazon reviews, Goodreads, Yelp). Each field's \
description says what it means and its allowed range.

Be realistic:
- Tastes are broad: 6 to 15 categories, none with more than about 40% of the weight.
- Ratings are not degenerate: every value of the rating scale gets some share, \
usually skewed towards the top as in real review logs.
- Activity and popularity are long-tailed: a few heavy users and hit items, many \
light users and niche items.
- For every category list 20 to 40 distinct, real-sounding item names that such \
users would buy, read, watch or visit.

Answer with the JSON object only."""


def write_spec(
    client: genai.Client,
    model: str,
    profile: Profile,
    *,
    usage: Usage,
    rating_scale: RatingScale | None = None,
    thinking_budget: int | None = 0,
    max_output_tokens: int = SPEC_MAX_OUTPUT_TOKENS,
    attempts: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 10.0,
) -> SpecAnswer:
    """Ask Gemini for the behaviour spec of a profile known only by its description."""
    from google.genai import types

    scale = rating_scale or RatingScale()
    config = types.GenerateContentConfig(
        system_instruction=SPEC_INSTRUCTION,
        temperature=SPEC_TEMPERATURE,
        max_output_tokens=max_output_tokens,
        response_mime_type="application/json",
        response_json_schema=spec_schema(),
        thinking_config=_thinking(thinking_budget),
        automatic_function_calling=_no_tools(),
    )
    values = ", ".join(f"{value:g}" for value in scale.values())
    contents = (
        f"Profile name: {profile.name}\n"
        f"Description of the users: {profile.description}\n"
        f"Rating scale: {values}; star_shares must hold {len(scale.values())} "
        "numbers, lowest rating first."
    )

    def parse(text: str) -> SpecAnswer:
        reply = _load_model(text, SpecReply)
        fields = reply.model_dump(exclude={"categories"})
        fields["categories"] = [
            {"category": c.category, "weight": c.weight} for c in reply.categories
        ]
        fields["rating_scale"] = scale.model_dump()
        try:
            spec = build_spec(fields, owner=profile.name)
        except SpecError as error:
            raise _AttemptFailed(
                f"the answer is not a usable behaviour spec: {error}", retryable=False
            ) from None
        return SpecAnswer(spec, _item_names(reply, spec))

    return _generate(
        client,
        model,
        contents,
        config,
        parse=parse,
        usage=usage,
        retry=_Retry(attempts, backoff_s, max_backoff_s),
        what=f"Gemini model {model!r} could not write the behaviour spec of "
        f"profile {profile.name!r}",
    )


def spec_schema() -> dict[str, Any]:
    """Return the JSON schema sent for spec mode: SpecReply without titles/defaults."""
    schema: dict[str, Any] = _clean_schema(SpecReply.model_json_schema())
    return schema


def rows_schema() -> dict[str, Any]:
    """Return the JSON schema sent for rows mode: RowsReply without titles."""
    schema: dict[str, Any] = _clean_schema(RowsReply.model_json_schema())
    return schema


def _item_names(reply: SpecReply, spec: BehaviorSpec) -> dict[str, list[str]]:
    """Collect distinct item names per category the repaired spec kept."""
    kept = {entry.category for entry in spec.categories}
    names: dict[str, list[str]] = {}
    for entry in reply.categories:
        slug = slugify(entry.category)
        if slug not in kept:
            continue
        listed = names.setdefault(slug, [])
        for name in entry.example_items:
            name = " ".join(name.split())[:80]
            if name and name not in listed and len(listed) < ITEM_NAMES_PER_CATEGORY:
                listed.append(name)
    return names


# -- rows mode ---------------------------------------------------------------------


@dataclass(frozen=True)
class RowsAnswer:
    """Interactions written by Gemini, sorted by user, time and item."""

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp_s: np.ndarray
    rejected: int
    reasks: int


# Sent to Gemini as the response schema, like SpecReply.
class RowReply(BaseModel):
    """One interaction: a user rating an item at a moment in time."""

    user_id: int = Field(description="one of the user_id values asked for")
    item_id: int = Field(description="an item_id from the items list")
    rating: float = Field(description="exactly one of the rating_scale values")
    timestamp: str = Field(
        description="ISO-8601 UTC time inside the time window, e.g. "
        "2024-03-05T19:42:07Z"
    )


class RowsReply(BaseModel):
    """The interactions asked for."""

    rows: list[RowReply]


ROWS_INSTRUCTION = """\
You write interaction logs for pytest-prisyn, which tests recommender systems on \
realistic synthetic data. The request is a JSON object:
- users: who interacts, their profile, and exactly how many interactions each needs;
- profiles: what each profile's users are like;
- items: the catalog items you may use (item_id, name, category);
- rating_scale: the only allowed ratings;
- time_window: start (inclusive) and end (exclusive), UTC;
- already_taken (if present): (user_id, item_id) pairs that exist already;
- rejected_rows (if present): rows of an earlier answer that were refused, and why.

Rules:
- Write exactly `interactions` rows for every user, no more and no fewer.
- Every row uses a user_id from users and an item_id from items.
- A user interacts with an item at most once; never repeat an already_taken pair.
- rating is exactly one of rating_scale, as a number.
- timestamp is ISO-8601 with a Z suffix, inside time_window.

Behave like a real log:
- Popularity is skewed: a few items are used by many users, most by few.
- Each user follows their profile's taste, with a favourite category but spread \
over several categories.
- Ratings follow taste and item quality: mostly high, some low, not all equal.
- Timestamps come in sessions: bursts of interactions minutes apart, sessions \
days apart, more in the evening than at night.

Answer with the JSON object only."""


def write_rows(
    client: genai.Client,
    model: str,
    simulator: Simulator,
    *,
    descriptions: Mapping[str, str],
    usage: Usage,
    chunk_rows: int = 200,
    max_reasks: int = 2,
    thinking_budget: int | None = 0,
    temperature: float = ROWS_TEMPERATURE,
    attempts: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 10.0,
) -> RowsAnswer:
    """Ask Gemini to write the interactions the simulator plans, chunk by chunk."""
    if max_reasks < 0:
        raise ValueError(f"max_reasks must be at least 0, got {max_reasks}")
    plan = _Plan.from_simulator(simulator, descriptions)
    chunks = _chunk_users(np.asarray(simulator.counts), chunk_rows)
    retry = _Retry(attempts, backoff_s, max_backoff_s)
    results: list[_ChunkResult] = []
    for chunk in chunks:
        logger.info(
            "Gemini %s: writing %d rows of %s", model, sum(chunk.wanted.values()), chunk
        )
        results.append(
            _write_chunk(
                client,
                model,
                plan,
                chunk,
                usage=usage,
                max_reasks=max_reasks,
                thinking_budget=thinking_budget,
                temperature=temperature,
                retry=retry,
            )
        )
    return _assemble(results)


@dataclass(frozen=True)
class _Plan:
    """What every chunk's prompt and checks need from the simulator."""

    item_ids: np.ndarray
    item_names: list[str]
    item_categories: list[str]
    profiles: list[str]
    user_profile: np.ndarray
    mixes: list[dict[str, float]]
    descriptions: dict[str, str]
    scale: list[float]
    start_s: int
    end_s: int
    seed: int

    @classmethod
    def from_simulator(
        cls, simulator: Simulator, descriptions: Mapping[str, str]
    ) -> _Plan:
        """Read the catalog, profiles, rating scale and time window."""
        catalog = simulator.catalog()
        span_days = max(spec.span_days for spec in simulator.specs)
        return cls(
            item_ids=catalog["item_id"].to_numpy(dtype=np.int64),
            item_names=[str(name) for name in catalog["name"]],
            item_categories=[str(category) for category in catalog["category"]],
            profiles=list(simulator.profiles),
            user_profile=np.asarray(simulator.user_profile),
            mixes=[spec.mix() for spec in simulator.specs],
            descriptions={
                name: descriptions.get(name, name) for name in simulator.profiles
            },
            scale=list(simulator.scale.values()),
            start_s=EPOCH_SECONDS,
            end_s=EPOCH_SECONDS + span_days * 86_400,
            seed=simulator.seed,
        )

    @property
    def n_items(self) -> int:
        """Return how many items the catalog has."""
        return len(self.item_ids)


@dataclass(frozen=True)
class _Chunk:
    """Consecutive users asked for in one prompt, and their interaction counts."""

    index: int
    total: int
    wanted: dict[int, int]

    def __str__(self) -> str:
        """Name the chunk for messages, e.g. 'chunk 2 of 5 (users 7-12)'."""
        users = list(self.wanted)
        span = (
            f"user {users[0]}" if len(users) == 1 else f"users {users[0]}-{users[-1]}"
        )
        return f"chunk {self.index + 1} of {self.total} ({span})"


@dataclass(frozen=True)
class _Row:
    """One accepted interaction."""

    user_id: int
    item_id: int
    rating: float
    timestamp_s: int


@dataclass(frozen=True)
class _ChunkResult:
    """A finished chunk: its accepted rows and what it took to get them."""

    rows: list[_Row]
    rejected: int
    reasks: int


def _chunk_users(counts: np.ndarray, chunk_rows: int) -> list[_Chunk]:
    """Split users (1-based ids) into runs whose counts sum to about chunk_rows."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    groups: list[dict[int, int]] = [{}]
    for index, count in enumerate(counts.tolist()):
        if count <= 0:
            continue
        if groups[-1] and sum(groups[-1].values()) + count > chunk_rows:
            groups.append({})
        groups[-1][index + 1] = int(count)
    groups = [group for group in groups if group]
    return [_Chunk(i, len(groups), group) for i, group in enumerate(groups)]


def _write_chunk(
    client: genai.Client,
    model: str,
    plan: _Plan,
    chunk: _Chunk,
    *,
    usage: Usage,
    max_reasks: int,
    thinking_budget: int | None,
    temperature: float,
    retry: _Retry,
) -> _ChunkResult:
    """Ask for one chunk's rows, then re-ask for what is missing."""
    from google.genai import types

    kept: dict[int, list[_Row]] = {user: [] for user in chunk.wanted}
    items = _prompt_items(plan, chunk)
    rejected = 0
    reasks = 0
    feedback: list[dict[str, Any]] = []
    for ask in range(max_reasks + 1):
        missing = _missing(chunk, kept)
        if not missing:
            break
        reasks = ask
        prompt = _rows_prompt(plan, missing, items, kept, feedback)
        config = types.GenerateContentConfig(
            system_instruction=ROWS_INSTRUCTION,
            temperature=temperature,
            max_output_tokens=TOKENS_PER_ROW * sum(missing.values()) + ROWS_BASE_TOKENS,
            response_mime_type="application/json",
            response_json_schema=rows_schema(),
            thinking_config=_thinking(thinking_budget),
            automatic_function_calling=_no_tools(),
        )
        rows = _generate(
            client,
            model,
            prompt,
            config,
            parse=_load_rows,
            usage=usage,
            retry=retry,
            what=f"Gemini model {model!r} could not write the rows of {chunk}",
        )
        feedback = _screen_rows(rows, plan, missing, kept)
        rejected += len(feedback)
        if feedback:
            logger.info("Gemini %s: %s: %d rows rejected", model, chunk, len(feedback))
    missing = _missing(chunk, kept)
    if missing:
        raise GenerationError(
            _short_message(model, chunk, kept, rejected, max_reasks + 1, feedback)
        )
    return _ChunkResult(
        [row for rows in kept.values() for row in rows], rejected, reasks
    )


def _missing(chunk: _Chunk, kept: Mapping[int, list[_Row]]) -> dict[int, int]:
    """Return how many rows each user of the chunk still needs."""
    return {
        user: wanted - len(kept[user])
        for user, wanted in chunk.wanted.items()
        if len(kept[user]) < wanted
    }


def _prompt_items(plan: _Plan, chunk: _Chunk) -> list[int]:
    """Choose the catalog items (0-based) the chunk's prompt shows, about 400."""
    # A user with more interactions than 400 items needs a wider choice.
    limit = max(MAX_PROMPT_ITEMS, max(chunk.wanted.values()) + MAX_PROMPT_ITEMS // 4)
    if plan.n_items <= limit:
        return list(range(plan.n_items))
    demand: dict[str, float] = {}
    for user, count in chunk.wanted.items():
        mix = plan.mixes[int(plan.user_profile[user - 1])]
        for category, share in mix.items():
            demand[category] = demand.get(category, 0.0) + count * share
    floor = 0.02 * max(demand.values(), default=1.0)
    weights = np.array(
        [demand.get(category, 0.0) + floor for category in plan.item_categories]
    )
    # Gumbel top-k: a weighted sample without replacement, the same every run.
    rng = np.random.default_rng([plan.seed, chunk.index])
    keys = np.log(weights) + rng.gumbel(size=plan.n_items)
    chosen = np.argsort(-keys, kind="stable")[:limit]
    return sorted(int(index) for index in chosen)


def _rows_prompt(
    plan: _Plan,
    missing: Mapping[int, int],
    items: Sequence[int],
    kept: Mapping[int, list[_Row]],
    feedback: Sequence[dict[str, Any]],
) -> str:
    """Return the machine-readable JSON request for one ask."""
    profiles = sorted({int(plan.user_profile[user - 1]) for user in missing})
    request: dict[str, Any] = {
        "users": [
            {
                "user_id": user,
                "profile": plan.profiles[int(plan.user_profile[user - 1])],
                "interactions": count,
            }
            for user, count in missing.items()
        ],
        "profiles": [
            {
                "name": plan.profiles[p],
                "description": plan.descriptions[plan.profiles[p]],
            }
            for p in profiles
        ],
        "rating_scale": plan.scale,
        "time_window": {
            "start": _iso(plan.start_s),
            "end": _iso(plan.end_s),
        },
        "items": [
            {
                "item_id": int(plan.item_ids[index]),
                "name": plan.item_names[index],
                "category": plan.item_categories[index],
            }
            for index in items
        ],
    }
    taken = [[row.user_id, row.item_id] for user in missing for row in kept[user]]
    if taken:
        request["already_taken"] = taken[:MAX_TAKEN_PAIRS]
    if feedback:
        request["rejected_rows"] = list(feedback[:MAX_FEEDBACK_ROWS])
    return json.dumps(request, ensure_ascii=False)


def _load_rows(text: str) -> list[Any]:
    """Parse the rows answer loosely: the JSON shape, not each row's values."""
    data = _load_json(text)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise _AttemptFailed(
            "the answer is JSON but not an object with a 'rows' list", retryable=True
        )
    return rows


def _screen_rows(
    rows: Sequence[Any],
    plan: _Plan,
    missing: Mapping[int, int],
    kept: dict[int, list[_Row]],
) -> list[dict[str, Any]]:
    """Keep the valid rows (appending to kept); return the rejected ones with why."""
    room = dict(missing)
    taken = {(row.user_id, row.item_id) for rows in kept.values() for row in rows}
    rejected: list[dict[str, Any]] = []
    for raw in rows:
        row, reason = _check_row(raw, plan, room, taken)
        if row is None:
            shown = json.dumps(raw, ensure_ascii=False)
            rejected.append(
                {"row": raw if len(shown) <= 300 else _clip(shown), "reason": reason}
            )
            continue
        kept[row.user_id].append(row)
        taken.add((row.user_id, row.item_id))
        room[row.user_id] -= 1
    return rejected


def _check_row(
    raw: Any, plan: _Plan, room: Mapping[int, int], taken: set[tuple[int, int]]
) -> tuple[_Row | None, str]:
    """Return the row if it is valid and wanted, else None and the reason."""
    if not isinstance(raw, dict):
        return None, "not an object with user_id, item_id, rating, timestamp"
    user = _whole_number(raw.get("user_id"))
    if user is None or user not in room:
        return None, f"user_id {raw.get('user_id')!r} was not asked for"
    item = _whole_number(raw.get("item_id"))
    if item is None or not 1 <= item <= plan.n_items:
        return None, f"item_id {raw.get('item_id')!r} is not in the catalog"
    rating = _scale_value(raw.get("rating"), plan.scale)
    if rating is None:
        return None, f"rating {raw.get('rating')!r} is not one of {plan.scale}"
    seconds, problem = _timestamp(raw.get("timestamp"), plan)
    if seconds is None:
        return None, problem
    if (user, item) in taken:
        return None, f"user {user} already has item {item}"
    if room[user] <= 0:
        return None, f"user {user} already has all the interactions asked for"
    return _Row(user, item, rating, seconds), ""


def _whole_number(value: Any) -> int | None:
    """Return value as an int if it is a JSON integer (or integral float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _scale_value(value: Any, scale: Sequence[float]) -> float | None:
    """Return the scale value a numeric rating equals, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    for allowed in scale:
        if abs(value - allowed) < 1e-9:
            return allowed
    return None


def _timestamp(value: Any, plan: _Plan) -> tuple[int | None, str]:
    """Parse an ISO-8601 timestamp with an offset into unix seconds in the window."""
    if not isinstance(value, str):
        return None, f"timestamp {value!r} is not an ISO-8601 string"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, f"timestamp {value!r} is not ISO-8601"
    if moment.tzinfo is None:
        return None, f"timestamp {value!r} has no Z or UTC offset"
    seconds = int(moment.timestamp() // 1)
    if not plan.start_s <= seconds < plan.end_s:
        return None, (
            f"timestamp {value!r} is outside {_iso(plan.start_s)}..{_iso(plan.end_s)}"
        )
    return seconds, ""


def _iso(seconds: int) -> str:
    """Format unix seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_message(
    model: str,
    chunk: _Chunk,
    kept: Mapping[int, list[_Row]],
    rejected: int,
    asks: int,
    feedback: Sequence[dict[str, Any]],
) -> str:
    """Describe a chunk that stayed short after every re-ask."""
    wanted = sum(chunk.wanted.values())
    have = sum(len(rows) for rows in kept.values())
    short = ", ".join(
        f"user {user}: {len(kept[user])} of {count}"
        for user, count in chunk.wanted.items()
        if len(kept[user]) < count
    )
    reasons = "; ".join(str(entry["reason"]) for entry in feedback[:3])
    last = f" Last rejections: {reasons}." if reasons else ""
    return (
        f"Gemini model {model!r} left {chunk} short: wanted {wanted} rows, "
        f"kept {have}, rejected {rejected} in {asks} asks ({asks - 1} re-asks); "
        f"short users: {short}.{last} Retry later, raise max_reasks, or use "
        "--prisyn-backend=simulate."
    )


def _assemble(results: Sequence[_ChunkResult]) -> RowsAnswer:
    """Join chunks in chunk order and sort rows by user, time and item."""
    rows = [row for result in results for row in result.rows]
    user_id = np.array([row.user_id for row in rows], dtype=np.int64)
    item_id = np.array([row.item_id for row in rows], dtype=np.int64)
    rating = np.array([row.rating for row in rows], dtype=np.float64)
    timestamp_s = np.array([row.timestamp_s for row in rows], dtype=np.int64)
    order = np.lexsort((item_id, timestamp_s, user_id))
    return RowsAnswer(
        user_id=user_id[order],
        item_id=item_id[order],
        rating=rating[order],
        timestamp_s=timestamp_s[order],
        rejected=sum(result.rejected for result in results),
        reasks=sum(result.reasks for result in results),
    )


# -- one call, checked and retried ---------------------------------------------------


@dataclass(frozen=True)
class _Retry:
    """How often and how patiently one question is asked again."""

    attempts: int
    backoff_s: float
    max_backoff_s: float

    def __post_init__(self) -> None:
        """Refuse settings that would never ask at all."""
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def delay(self, failures: int, hint: float | None) -> float:
        """Return the wait after `failures` failed attempts, honouring a hint."""
        wait = self.backoff_s * 2.0 ** (failures - 1)
        if hint is not None:
            wait = max(wait, hint)
        return max(0.0, min(wait, self.max_backoff_s))


class _AttemptFailed(Exception):
    """One attempt failed; says why and whether asking again may help."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _generate(
    client: genai.Client,
    model: str,
    contents: str,
    config: types.GenerateContentConfig,
    *,
    parse: Callable[[str], T],
    usage: Usage,
    retry: _Retry,
    what: str,
) -> T:
    """Call Gemini and parse the answer, retrying what may succeed next time."""
    attempt = 1
    while True:
        try:
            response = _call(client, model, contents, config)
            usage.add(response)
            return parse(_answer_text(response))
        except _AttemptFailed as failure:
            if not failure.retryable or attempt >= retry.attempts:
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                raise GenerationError(
                    _redact(f"{what}: {failure} (after {tries}).")
                ) from failure.__cause__
            wait = retry.delay(attempt, failure.retry_after)
            logger.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)",
                what,
                _redact(str(failure)),
                wait,
                attempt + 1,
                retry.attempts,
            )
            time.sleep(wait)
            attempt += 1


def _call(
    client: genai.Client,
    model: str,
    contents: str,
    config: types.GenerateContentConfig,
) -> types.GenerateContentResponse:
    """Send one generateContent request; turn API and network errors into failures."""
    from google.genai import errors

    try:
        return client.models.generate_content(
            model=model, contents=contents, config=config
        )
    except errors.APIError as error:
        raise _AttemptFailed(
            f"the API answered {_api_error_text(error)}",
            retryable=error.code in RETRYABLE_STATUS,
            retry_after=_retry_delay(error),
        ) from error
    except Exception as error:
        kind = _network_failure(error)
        if kind is None:
            raise
        raise _AttemptFailed(
            f"{kind} ({type(error).__name__}: {_clip(str(error))})", retryable=True
        ) from error


def _answer_text(response: types.GenerateContentResponse) -> str:
    """Return the answer's text, or raise why there is no usable answer."""
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = feedback.block_reason if feedback is not None else None
        if reason is not None:
            extra = feedback.block_reason_message if feedback is not None else None
            detail = f": {_clip(extra)}" if extra else ""
            raise _AttemptFailed(
                f"the prompt was blocked (block reason {_name(reason)}{detail})",
                retryable=False,
            )
        raise _AttemptFailed("the answer had no candidates", retryable=True)
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content is not None else None
    text = "".join(part.text for part in parts or [] if part.text and not part.thought)
    finish = _name(candidate.finish_reason)
    if finish == "MAX_TOKENS":
        meta = response.usage_metadata
        thoughts = (meta.thoughts_token_count or 0) if meta is not None else 0
        spent = f" ({thoughts} thinking tokens spent)" if thoughts else ""
        cut = "before any text" if not text else f"after {len(text)} characters"
        raise _AttemptFailed(
            f"the answer was cut off at the output limit (finish reason MAX_TOKENS) "
            f"{cut}{spent}",
            retryable=True,
        )
    if finish != "STOP":
        raise _AttemptFailed(
            f"the answer stopped with finish reason {finish}",
            retryable=finish not in POLICY_FINISH_REASONS,
        )
    if not text.strip():
        raise _AttemptFailed(
            "the answer was empty (finish reason STOP)", retryable=True
        )
    return text


def _load_json(text: str) -> Any:
    """Parse JSON text; invalid JSON is a retryable failure."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise _AttemptFailed(
            f"the answer is not valid JSON ({error}; it starts {_clip(text, 80)!r})",
            retryable=True,
        ) from None


def _load_model(text: str, model: type[M]) -> M:
    """Parse JSON text into a pydantic model; a shape mismatch is retryable."""
    data = _load_json(text)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'answer'}: {item['msg']}"
            for item in error.errors()[:3]
        )
        raise _AttemptFailed(
            f"the answer does not match the schema ({problems})", retryable=True
        ) from None


def _no_tools() -> types.AutomaticFunctionCallingConfig:
    """Return the config that turns off the SDK's function-calling loop (and log)."""
    from google.genai import types

    return types.AutomaticFunctionCallingConfig(disable=True)


def _thinking(budget: int | None) -> types.ThinkingConfig | None:
    """Return a thinking config for a budget; None leaves the model's default."""
    from google.genai import types

    return None if budget is None else types.ThinkingConfig(thinking_budget=budget)


def _clean_schema(node: Any) -> Any:
    """Drop 'title' and 'default' keywords everywhere, keeping property names."""
    if isinstance(node, list):
        return [_clean_schema(value) for value in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "default"):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            cleaned[key] = {name: _clean_schema(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _clean_schema(value)
    return cleaned


def _api_error_text(error: Any) -> str:
    """Describe an APIError as 'code STATUS: message'."""
    status = f" {error.status}" if error.status else ""
    message = f": {_clip(str(error.message))}" if error.message else ""
    return f"{error.code}{status}{message}"


def _retry_delay(error: Any) -> float | None:
    """Return the RetryInfo retryDelay of a Google error body, in seconds."""
    body = error.details
    inner = body.get("error", body) if isinstance(body, dict) else {}
    details = inner.get("details") if isinstance(inner, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "RetryInfo"
        ):
            continue
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(detail.get("retryDelay")))
        if match:
            return float(match.group(1))
    return None


def _network_failure(error: BaseException) -> str | None:
    """Name a timeout or connection failure of any HTTP stack; None if neither."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if isinstance(error, TimeoutError) or "TimeoutException" in names:
        return "the request timed out"
    if isinstance(error, ConnectionError) or names & {
        "TransportError",
        "ClientConnectionError",
    }:
        return "the connection failed"
    return None


def _name(value: Any) -> str:
    """Return an enum's value (known or not) or the string itself."""
    if value is None:
        return "none"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _clip(text: str, limit: int = MAX_API_TEXT) -> str:
    """Collapse whitespace and cut long API text down to size."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _redact(text: str) -> str:
    """Blank out anything shaped like a Google API key."""
    return _GOOGLE_KEY.sub("[redacted key]", text)
