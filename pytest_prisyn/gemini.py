"""The Gemini backend: behaviour specs and interaction rows written by Google Gemini.

Two modes share one calling path. Spec mode asks for a behaviour spec (plus item
names) that the simulator then turns into data; rows mode asks Gemini to write
the interactions themselves, following the simulator's plan (who has how many
interactions, which items exist). Every answer is parsed and checked here, never
trusted: ``response.parsed`` is silently ``None`` on bad JSON or truncation.

Every call goes through the SDK's async client with the SDK's own retries off
(they ignore RetryInfo, and on a refused connection they sleep up to ten
seconds unasked). Retries are ours: bounded by attempts and by a total time
cap, honouring RetryInfo. Calls are counted in a `Usage`, may be held to a
`Budget`. Rows-mode chunks go out concurrently, and every row accepted is kept
in a `RowsCache` under its user, so a failed run resumes and a bigger request
asks only for the rows it adds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import hashlib
import json
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from pytest_prisyn.errors import GenerationError, PrisynError, SpecError
from pytest_prisyn.simulate import EPOCH_SECONDS
from pytest_prisyn.spec import BehaviorSpec, RatingScale, build_spec, slugify

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

    from pytest_prisyn.profiles import Profile
    from pytest_prisyn.simulate import Simulator

__all__ = [
    "PRICES",
    "Budget",
    "BudgetExceededError",
    "CallUsage",
    "Estimate",
    "Price",
    "Progress",
    "RowsAnswer",
    "RowsCache",
    "SpecAnswer",
    "SpecReply",
    "Usage",
    "estimate_rows",
    "estimate_spec",
    "find_price",
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
MAX_NAMED_USERS = 8  # users (or runs of users) a message names before "N more"
ITEM_NAMES_PER_CATEGORY = 60
MAX_API_TEXT = 300
DEFAULT_MAX_TOTAL_S = 600.0
DEFAULT_CONCURRENCY = 4
# Exponential backoff waits up to this share longer, so that chunks failing
# together do not all come back at the same instant.
BACKOFF_JITTER = 0.25
# Estimates: about four characters a token (prompts are JSON and English);
# Gemini spends about 48 tokens writing one row (digits are single tokens) and
# about 2,500 on a behaviour spec with its item names.
CHARS_PER_TOKEN = 4
ROW_OUTPUT_TOKENS = 48
ROWS_ANSWER_TOKENS = 10
SPEC_OUTPUT_TOKENS = 2500
# Part of every rows-cache key; bump it when the meaning of cached rows changes.
ROWS_KEY_VERSION = "prisyn-user-rows-1"
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_HTML_TAG = re.compile(r"<[^>]*>")


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


# -- what calls cost -----------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens of one model; thinking is billed as output."""

    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """Return the dollars of a call with these token counts."""
        return (
            prompt_tokens * self.input_per_million
            + output_tokens * self.output_per_million
        ) / 1_000_000


# Standard-tier list prices (REFERENCE.md section 4). A model not listed here is
# unpriced: its cost is None until the caller passes a price for it.
PRICES: dict[str, Price] = {
    "gemini-2.5-flash": Price(input_per_million=0.30, output_per_million=2.50),
}


def find_price(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """Return the price of a model id, `prices` overriding and adding to PRICES.

    A pinned version ('gemini-2.5-flash-001') costs what its model costs.
    """
    table = PRICES if prices is None else {**PRICES, **prices}
    name = model.removeprefix("models/")
    found = table.get(name)
    return found if found is not None else table.get(re.sub(r"-\d{3}$", "", name))


@dataclass(frozen=True)
class CallUsage:
    """The tokens of one answered call, the model asked and the version answering."""

    model: str
    model_version: str | None
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int

    @property
    def tokens(self) -> int:
        """Return every token of the call: prompt, output and thinking."""
        return self.prompt_tokens + self.output_tokens + self.thinking_tokens

    def cost(self, prices: Mapping[str, Price] | None = None) -> float | None:
        """Return the call's dollars, or None when the model has no price."""
        price = find_price(self.model, prices)
        if price is None:
            return None
        return price.cost(self.prompt_tokens, self.output_tokens + self.thinking_tokens)


@dataclass
class Usage:
    """Calls and tokens spent on Gemini, what it took, and who answered.

    Not locked: update one Usage from one thread at a time (write_rows updates
    it only on the thread running its event loop).
    """

    calls: int = 0
    unanswered: int = 0  # requests that got an error or no answer at all
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    retries: int = 0
    reasks: int = 0
    rejected_rows: int = 0
    splits: int = 0
    rows_from_cache: int = 0
    model_versions: list[str] = field(default_factory=list)
    per_call: list[CallUsage] = field(default_factory=list)

    def add(
        self, response: types.GenerateContentResponse, *, model: str | None = None
    ) -> CallUsage:
        """Count one answered call to `model` and return its usage."""
        meta = response.usage_metadata
        version = response.model_version
        call = CallUsage(
            model=model or version or "unknown",
            model_version=version,
            prompt_tokens=(meta.prompt_token_count or 0) if meta else 0,
            output_tokens=(meta.candidates_token_count or 0) if meta else 0,
            thinking_tokens=(meta.thoughts_token_count or 0) if meta else 0,
        )
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.output_tokens += call.output_tokens
        self.thinking_tokens += call.thinking_tokens
        self.per_call.append(call)
        if version and version not in self.model_versions:
            self.model_versions = sorted([*self.model_versions, version])
        return call

    @property
    def tokens(self) -> int:
        """Return every token spent: prompt, output and thinking."""
        return self.prompt_tokens + self.output_tokens + self.thinking_tokens

    def cost(self, prices: Mapping[str, Price] | None = None) -> float | None:
        """Return the dollars spent, or None if a model called has no price."""
        costs = [call.cost(prices) for call in self.per_call]
        if None in costs:
            return None
        return sum(cost for cost in costs if cost is not None)

    def cost_note(self, prices: Mapping[str, Price] | None = None) -> str | None:
        """Say why the cost is unknown, or None when it is known."""
        unpriced = sorted(
            {
                call.model
                for call in self.per_call
                if find_price(call.model, prices) is None
            }
        )
        if not unpriced:
            return None
        names = ", ".join(repr(name) for name in unpriced)
        return (
            f"no price is known for model {names}, so the cost is not estimated; "
            "add its dollars per million input and output tokens to prisyn_prices"
        )

    def as_dict(self, prices: Mapping[str, Price] | None = None) -> dict[str, Any]:
        """Return the counters, every call and the cost as plain JSON-ready data."""
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "thinking_tokens": self.thinking_tokens,
            "unanswered": self.unanswered,
            "retries": self.retries,
            "reasks": self.reasks,
            "rejected_rows": self.rejected_rows,
            "splits": self.splits,
            "rows_from_cache": self.rows_from_cache,
            "model_versions": list(self.model_versions),
            "per_call": [asdict(call) for call in self.per_call],
            "cost_usd": self.cost(prices),
            "cost_note": self.cost_note(prices),
        }


class BudgetExceededError(GenerationError):
    """A Gemini call was not made because it could take the run past its budget."""

    def __init__(
        self,
        message: str,
        *,
        spent_tokens: int = 0,
        spent_dollars: float = 0.0,
        next_tokens: int = 0,
        next_cost: float | None = None,
    ) -> None:
        super().__init__(message)
        self.spent_tokens = spent_tokens
        self.spent_dollars = spent_dollars
        self.next_tokens = next_tokens
        self.next_cost = next_cost


class Budget:
    """A limit on what a run may spend on Gemini, in tokens, dollars or both.

    Safe to share between threads and event-loop tasks. Each call holds its
    worst case (prompt estimate plus max_output_tokens) while it is in flight,
    so calls running at the same time cannot pass the limit together.
    """

    def __init__(
        self,
        *,
        limit_tokens: int | None = None,
        limit_dollars: float | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        if limit_tokens is not None and limit_tokens < 0:
            raise ValueError(f"limit_tokens must be at least 0, got {limit_tokens}")
        if limit_dollars is not None and limit_dollars < 0:
            raise ValueError(f"limit_dollars must be at least 0, got {limit_dollars}")
        self.limit_tokens = limit_tokens
        self.limit_dollars = limit_dollars
        self.prices = prices
        self.spent_tokens = 0
        self.spent_dollars = 0.0
        self._held_tokens = 0
        self._held_dollars = 0.0
        self._lock = threading.Lock()

    def estimate_cost(
        self, model: str, prompt_tokens: int, output_tokens: int
    ) -> float | None:
        """Return the dollars of a call at this budget's prices, None if unpriced."""
        price = find_price(model, self.prices)
        return None if price is None else price.cost(prompt_tokens, output_tokens)

    def check(
        self,
        estimate_tokens: int,
        estimate_cost: float | None,
        *,
        what: str = "the next Gemini call",
    ) -> None:
        """Raise BudgetExceededError if a call this big could pass a limit."""
        with self._lock:
            self._check(estimate_tokens, estimate_cost, what)

    @contextlib.contextmanager
    def hold(
        self,
        estimate_tokens: int,
        estimate_cost: float | None,
        *,
        what: str = "the next Gemini call",
    ) -> Iterator[None]:
        """Check a call, and count its worst case as spent while it runs."""
        with self._lock:
            self._check(estimate_tokens, estimate_cost, what)
            self._held_tokens += estimate_tokens
            self._held_dollars += estimate_cost or 0.0
        try:
            yield
        finally:
            with self._lock:
                self._held_tokens -= estimate_tokens
                self._held_dollars -= estimate_cost or 0.0

    def charge(self, call: CallUsage) -> None:
        """Count what an answered call really spent."""
        with self._lock:
            self.spent_tokens += call.tokens
            self.spent_dollars += call.cost(self.prices) or 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the limits and what is spent as plain JSON-ready data."""
        with self._lock:
            return {
                "limit_tokens": self.limit_tokens,
                "limit_dollars": self.limit_dollars,
                "spent_tokens": self.spent_tokens,
                "spent_dollars": self.spent_dollars,
            }

    def _check(self, tokens: int, cost: float | None, what: str) -> None:
        """Raise if `what` could pass a limit; the caller holds the lock."""
        raise_limit = (
            "Raise the limit with --prisyn-budget (tokens, e.g. 2000000, or "
            "dollars, e.g. $5; ini prisyn_budget), or ask for less data."
        )
        over_tokens = (
            self.limit_tokens is not None
            and self.spent_tokens + self._held_tokens + tokens > self.limit_tokens
        )
        over_dollars = (
            self.limit_dollars is not None
            and cost is not None
            and self.spent_dollars + self._held_dollars + cost > self.limit_dollars
        )
        if self.limit_dollars is not None and cost is None:
            message = (
                f"The Gemini budget is in dollars, but {what} has no known price: "
                "nothing was asked and the data is not cached. Add the model's "
                "prices to prisyn_prices, or give --prisyn-budget in tokens."
            )
        elif over_tokens or over_dollars:
            held = (
                f", {self._held_tokens:,} more held by calls in flight"
                if self._held_tokens
                else ""
            )
            message = (
                f"Gemini budget reached: {what} could use up to {tokens:,} tokens"
                f"{_dollars(cost)}, but {self.spent_tokens:,} tokens"
                f"{_dollars(self.spent_dollars)} are spent{held} of a limit "
                f"of {self._limits()}. Nothing was asked and the data is not "
                f"cached. {raise_limit}"
            )
        else:
            return
        raise BudgetExceededError(
            message,
            spent_tokens=self.spent_tokens,
            spent_dollars=self.spent_dollars,
            next_tokens=tokens,
            next_cost=cost,
        )

    def _limits(self) -> str:
        """Describe the limits, e.g. '20,000 tokens and $0.50'."""
        parts = []
        if self.limit_tokens is not None:
            parts.append(f"{self.limit_tokens:,} tokens")
        if self.limit_dollars is not None:
            parts.append(f"${self.limit_dollars:,.2f}")
        return " and ".join(parts)


def _dollars(amount: float | None) -> str:
    """Format dollars as ' ($0.0123)', or nothing if unknown."""
    return "" if amount is None else f" (${amount:.4f})"


@dataclass(frozen=True)
class Estimate:
    """What a request would cost if every call succeeded the first time."""

    calls: int
    prompt_tokens: int
    output_tokens: int
    cost: float | None

    @property
    def tokens(self) -> int:
        """Return prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        """Return the estimate as plain JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """Where a rows-mode generation stands: reported once the cached rows are
    read (chunks_done 0), then after each finished chunk.

    rows_kept counts every row the dataset has so far, from_cache those of
    them read from the rows cache.
    """

    chunks_done: int
    chunks_total: int
    rows_kept: int
    rows_rejected: int
    tokens: int
    from_cache: int


class RowsCache(Protocol):
    """Where rows mode keeps the rows Gemini wrote, so no row is paid for twice.

    Each key holds one user's valid rows (see `_UserRows`); a value may hold
    fewer rows than a request wants: the next run asks only for the rest.
    """

    def get(self, key: str) -> list[dict[str, Any]] | None:
        """Return the rows stored under key, or None."""

    def put(self, rows: Mapping[str, list[dict[str, Any]]]) -> None:
        """Store the valid rows of several keys, replacing what each held.

        Called after every answer with the rows of each user it added to:
        a store that can should write them in one transaction.
        """


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
    max_total_s: float = DEFAULT_MAX_TOTAL_S,
    budget: Budget | None = None,
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
        http_options=_no_sdk_retries(),
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

    retry = _Retry(attempts, backoff_s, max_backoff_s, max_total_s)
    return _run_async(
        lambda: _generate(
            client,
            model,
            _spec_contents(profile, scale),
            config,
            parse=parse,
            usage=usage,
            retry=retry,
            budget=budget,
            task=f"the behaviour spec of profile {profile.name!r}",
        )
    )


def estimate_spec(
    profile: Profile,
    model: str,
    *,
    rating_scale: RatingScale | None = None,
    prices: Mapping[str, Price] | None = None,
) -> Estimate:
    """Estimate what write_spec would cost for a profile, without calling Gemini."""
    contents = _spec_contents(profile, rating_scale or RatingScale())
    prompt = _prompt_tokens(SPEC_INSTRUCTION, contents, spec_schema())
    return _estimate(model, [(prompt, SPEC_OUTPUT_TOKENS)], prices)


def _spec_contents(profile: Profile, scale: RatingScale) -> str:
    """Return the spec-mode prompt: the profile and the rating scale."""
    values = ", ".join(f"{value:g}" for value in scale.values())
    return (
        f"Profile name: {profile.name}\n"
        f"Description of the users: {profile.description}\n"
        f"Rating scale: {values}; star_shares must hold {len(scale.values())} "
        "numbers, lowest rating first."
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
    from_cache: int = 0  # rows read from the rows cache


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
    max_total_s: float = DEFAULT_MAX_TOTAL_S,
    concurrency: int = DEFAULT_CONCURRENCY,
    rows_cache: RowsCache | None = None,
    reuse: bool = True,
    budget: Budget | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RowsAnswer:
    """Ask Gemini to write the interactions the simulator plans, chunks in parallel.

    Each user's rows are read from `rows_cache` first (unless `reuse` is
    false), and only what is missing is asked for: the users still short
    are split into chunks of about `chunk_rows` rows, at most `concurrency`
    asked at once. Every valid row is put in `rows_cache` as soon as it is
    accepted, so a run that fails keeps what it paid for and a bigger
    request tops each user up. The answer is assembled in user order, so it
    does not depend on which call finished first. `progress` is called once
    the cache is read and after each finished chunk, never twice at once, on
    the thread running the event loop: the calling thread, or a worker thread
    while the caller waits if the calling thread already runs an event loop
    (an async test, for example).
    """
    if max_reasks < 0:
        raise ValueError(f"max_reasks must be at least 0, got {max_reasks}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    plan = _Plan.from_simulator(simulator, descriptions)
    job = _RowsJob(
        client=client,
        model=model,
        plan=plan,
        usage=usage,
        retry=_Retry(attempts, backoff_s, max_backoff_s, max_total_s),
        budget=budget,
        max_reasks=max_reasks,
        ask_rows=chunk_rows,
        thinking_budget=thinking_budget,
        temperature=temperature,
        schema=rows_schema(),
        cache=_UserRows(model, plan, rows_cache, reuse=reuse),
    )
    wanted = _wanted(simulator)
    kept = job.cache.load(wanted)
    from_cache = sum(len(rows) for rows in kept.values())
    usage.rows_from_cache += from_cache
    chunks = _chunk_users(wanted, kept, chunk_rows)
    results = _run_async(
        lambda: _write_chunks(job, chunks, kept, concurrency, from_cache, progress)
    )
    return _assemble(kept, results, from_cache)


def estimate_rows(
    simulator: Simulator,
    model: str,
    *,
    chunk_rows: int = 200,
    prices: Mapping[str, Price] | None = None,
    descriptions: Mapping[str, str] | None = None,
    rows_cache: RowsCache | None = None,
) -> Estimate:
    """Estimate what write_rows would cost, without calling Gemini.

    Rows already in `rows_cache` cost nothing (pass the descriptions
    write_rows gets: they are part of each user's cache key). Retries and
    re-asks are not foreseen: the estimate is what a run that goes well costs.
    """
    plan = _Plan.from_simulator(simulator, descriptions or {})
    wanted = _wanted(simulator)
    kept = _UserRows(model, plan, rows_cache).load(wanted)
    schema = rows_schema()
    calls = []
    for chunk in _chunk_users(wanted, kept, chunk_rows):
        missing = _missing(chunk, kept)
        items = _prompt_items(plan, chunk, missing)
        while missing:
            part = _next_part(missing, chunk_rows)
            task = _rows_prompt(plan, part, items, kept)
            output = sum(part.values()) * ROW_OUTPUT_TOKENS + ROWS_ANSWER_TOKENS
            calls.append((_prompt_tokens(ROWS_INSTRUCTION, task, schema), output))
            missing = {
                user: count - part.get(user, 0)
                for user, count in missing.items()
                if count > part.get(user, 0)
            }
    return _estimate(model, calls, prices)


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
    """Users asked for in one prompt, and how many rows each needs in all."""

    index: int
    total: int
    wanted: dict[int, int]

    def __str__(self) -> str:
        """Name the chunk for messages, e.g. 'chunk 2 of 5 (users 7-12, 15)'."""
        users = sorted(self.wanted)
        runs: list[list[int]] = []
        for user in users:
            if runs and user == runs[-1][-1] + 1:
                runs[-1].append(user)
            else:
                runs.append([user])
        spans = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
        if len(spans) > MAX_NAMED_USERS:
            spans[MAX_NAMED_USERS:] = [f"... ({len(users)} users)"]
        who = "user" if len(users) == 1 else "users"
        return f"chunk {self.index + 1} of {self.total} ({who} {', '.join(spans)})"


@dataclass(frozen=True)
class _Row:
    """One accepted interaction."""

    user_id: int
    item_id: int
    rating: float
    timestamp_s: int

    def as_json(self) -> dict[str, Any]:
        """Return the row as Gemini writes it, to keep in the rows cache."""
        return {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "rating": self.rating,
            "timestamp": _iso(self.timestamp_s),
        }


@dataclass(frozen=True)
class _ChunkResult:
    """What writing a chunk (or part of one) took: rows written, refused, re-asks."""

    written: int
    rejected: int
    reasks: int


def _wanted(simulator: Simulator) -> dict[int, int]:
    """Return how many rows each user (1-based id) has, users with none left out."""
    counts = np.asarray(simulator.counts).tolist()
    return {user: int(count) for user, count in enumerate(counts, 1) if count > 0}


def _chunk_users(
    wanted: Mapping[int, int], kept: Mapping[int, list[_Row]], chunk_rows: int
) -> list[_Chunk]:
    """Group the users still short, in user order, into chunks.

    A chunk asks for about chunk_rows rows, and its users hold at most
    MAX_TAKEN_PAIRS rows in all when it is done, so every pair they hold fits
    in the prompt's already_taken list (a user holding more is alone).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    groups: list[dict[int, int]] = [{}]
    asked = held = 0
    for user, count in wanted.items():
        missing = count - len(kept[user])
        if missing <= 0:
            continue
        full = asked + missing > chunk_rows or held + count > MAX_TAKEN_PAIRS
        if groups[-1] and full:
            groups.append({})
            asked = held = 0
        groups[-1][user] = count
        asked += missing
        held += count
    groups = [group for group in groups if group]
    return [_Chunk(i, len(groups), group) for i, group in enumerate(groups)]


class _UserRows:
    """The rows cache: every user's valid rows under a key of their own.

    The key holds what shapes a user's rows: the model, the catalog, the
    rating scale, the time window, the seed, and the user's id and profile.
    It leaves out how many rows the user has, so a bigger request finds the
    rows a smaller one paid for and asks only for the extra ones, and a
    smaller request takes the first rows of each user. Rows are checked
    again when read; any that no longer fit are dropped from the cache. A
    cache that fails to read is not read again this run, one that fails to
    write is not written again; either is warned about once, and the rows
    are still used.
    """

    def __init__(
        self,
        model: str,
        plan: _Plan,
        cache: RowsCache | None,
        *,
        reuse: bool = True,
    ) -> None:
        self.model = model
        self.plan = plan
        self._cache = cache
        self._readable = cache is not None and reuse
        self._writable = cache is not None
        shared = {
            "version": ROWS_KEY_VERSION,
            "model": model,
            "items": [plan.item_ids.tolist(), plan.item_names, plan.item_categories],
            "scale": plan.scale,
            "window": [plan.start_s, plan.end_s],
            "seed": plan.seed,
        }
        self._shared = hashlib.sha256(json.dumps(shared).encode()).hexdigest()

    @property
    def keeps(self) -> bool:
        """Return whether rows written now are kept in the cache."""
        return self._writable

    def key(self, user: int) -> str:
        """Return the cache key of a user's rows."""
        profile = int(self.plan.user_profile[user - 1])
        name = self.plan.profiles[profile]
        identity = {
            "shared": self._shared,
            "user": user,
            "profile": name,
            "description": self.plan.descriptions[name],
            "mix": self.plan.mixes[profile],
        }
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self, wanted: Mapping[int, int]) -> dict[int, list[_Row]]:
        """Return each user's cached rows that fit, at most as many as wanted."""
        kept: dict[int, list[_Row]] = {user: [] for user in wanted}
        cleaned: dict[int, list[_Row]] = {}
        for user, count in wanted.items():
            stored = self._get(user)
            if stored is None:
                continue
            refused = (
                _screen_rows(stored, self.plan, {user: len(stored)}, kept)
                if isinstance(stored, list)
                else [{"reason": "not a list of rows"}]
            )
            if refused:
                logger.warning(
                    "Gemini %s: dropped %d cached %s of user %d that no longer "
                    "fit (%s)",
                    self.model,
                    len(refused),
                    "row" if len(refused) == 1 else "rows",
                    user,
                    refused[0]["reason"],
                )
                cleaned[user] = list(kept[user])
            del kept[user][count:]
        self.save(cleaned)
        return kept

    def save(self, rows: Mapping[int, Sequence[_Row]]) -> None:
        """Keep these users' rows, replacing what the cache held for them."""
        if not rows or not self._writable or self._cache is None:
            return
        try:
            self._cache.put(
                {
                    self.key(user): [row.as_json() for row in user_rows]
                    for user, user_rows in rows.items()
                }
            )
        except (PrisynError, OSError) as error:
            self._writable = False
            logger.warning(
                "Gemini %s: rows were not cached (the run goes on without "
                "keeping them): %s",
                self.model,
                error,
            )

    def _get(self, user: int) -> object:
        if not self._readable or self._cache is None:
            return None
        try:
            return self._cache.get(self.key(user))
        except (PrisynError, OSError) as error:
            self._readable = False
            logger.warning(
                "Gemini %s: rows cache unreadable, asking for every row: %s",
                self.model,
                error,
            )
            return None


@dataclass(frozen=True)
class _RowsJob:
    """What every ask of one write_rows run shares."""

    client: genai.Client
    model: str
    plan: _Plan
    usage: Usage
    retry: _Retry
    budget: Budget | None
    max_reasks: int
    ask_rows: int
    thinking_budget: int | None
    temperature: float
    schema: dict[str, Any]
    cache: _UserRows

    def config(self, rows: int) -> types.GenerateContentConfig:
        """Return the request config for an ask of this many rows."""
        from google.genai import types

        return types.GenerateContentConfig(
            system_instruction=ROWS_INSTRUCTION,
            temperature=self.temperature,
            max_output_tokens=TOKENS_PER_ROW * rows + ROWS_BASE_TOKENS,
            response_mime_type="application/json",
            response_json_schema=self.schema,
            thinking_config=_thinking(self.thinking_budget),
            automatic_function_calling=_no_tools(),
            http_options=_no_sdk_retries(),
        )


class _Tally:
    """Counts finished chunks and reports each one to the progress callback."""

    def __init__(
        self,
        total: int,
        from_cache: int,
        usage: Usage,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.total = total
        self.done = 0
        self.kept = from_cache
        self.rejected = 0
        self._from_cache = from_cache
        self._usage = usage
        self._tokens_before = usage.tokens
        self._progress = progress
        self._report()

    def add(self, result: _ChunkResult) -> None:
        """Count a finished chunk and report where the run stands."""
        self.done += 1
        self.kept += result.written
        self.rejected += result.rejected
        self._report()

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(
                Progress(
                    chunks_done=self.done,
                    chunks_total=self.total,
                    rows_kept=self.kept,
                    rows_rejected=self.rejected,
                    tokens=self._usage.tokens - self._tokens_before,
                    from_cache=self._from_cache,
                )
            )


async def _write_chunks(
    job: _RowsJob,
    chunks: Sequence[_Chunk],
    kept: dict[int, list[_Row]],
    concurrency: int,
    from_cache: int,
    progress: Callable[[Progress], None] | None,
) -> list[_ChunkResult]:
    """Write every chunk into `kept`, at most `concurrency` at once.

    After a chunk fails no new chunk starts, but chunks already asked finish
    (and are cached): their calls are paid for.
    """
    gate = asyncio.Semaphore(concurrency)
    tally = _Tally(len(chunks), from_cache, job.usage, progress)
    failed = False

    async def write(chunk: _Chunk) -> _ChunkResult | None:
        nonlocal failed
        async with gate:
            if failed:
                return None
            try:
                result = await _write_chunk(job, chunk, kept)
                tally.add(result)
            except BaseException:
                failed = True
                raise
        return result

    outcomes = await asyncio.gather(*map(write, chunks), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, GenerationError):
            # The chunk's own error, told how far the whole request got.
            notes = [str(outcome)]
            if len(chunks) > 1:
                notes.append(f"{tally.done} of {tally.total} chunks were written.")
            if job.cache.keeps:
                notes.append(
                    "Every row accepted is kept: the next run asks only for the rest."
                )
            outcome.args = (" ".join(notes),)
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, _ChunkResult)]


async def _write_chunk(
    job: _RowsJob, chunk: _Chunk, kept: dict[int, list[_Row]]
) -> _ChunkResult:
    """Write a chunk's missing rows, at most `job.ask_rows` rows an ask.

    A user with more missing rows than that is asked for them over several
    asks, one after the other, each seeing the rows taken before.
    """
    missing = _missing(chunk, kept)
    items = _prompt_items(job.plan, chunk, missing)
    logger.info(
        "Gemini %s: writing %d rows of %s", job.model, sum(missing.values()), chunk
    )
    done = _ChunkResult(written=0, rejected=0, reasks=0)
    while missing:
        target = {
            user: len(kept[user]) + count
            for user, count in _next_part(missing, job.ask_rows).items()
        }
        part = await _write_part(job, chunk, target, items, kept)
        done = _ChunkResult(
            done.written + part.written,
            done.rejected + part.rejected,
            done.reasks + part.reasks,
        )
        missing = _missing(chunk, kept)
    return done


def _next_part(missing: Mapping[int, int], ask_rows: int) -> dict[int, int]:
    """Return the next ask's rows per user: users in order, ask_rows rows at most."""
    part: dict[int, int] = {}
    room = ask_rows
    for user, count in missing.items():
        if room <= 0:
            break
        part[user] = min(count, room)
        room -= part[user]
    return part


async def _write_part(
    job: _RowsJob,
    chunk: _Chunk,
    target: Mapping[int, int],
    items: Sequence[int],
    kept: dict[int, list[_Row]],
) -> _ChunkResult:
    """Ask until each user of `target` holds that many rows, re-asking if short."""
    written = rejected = reasks = 0
    feedback: list[dict[str, Any]] = []
    for ask in range(job.max_reasks + 1):
        wanted = {
            user: count - len(kept[user])
            for user, count in target.items()
            if len(kept[user]) < count
        }
        if not wanted:
            break
        if ask:
            reasks += 1
            job.usage.reasks += 1
        rows = await _ask_rows(job, chunk, wanted, items, kept, feedback)
        before = {user: len(kept[user]) for user in wanted}
        feedback = _screen_rows(rows, job.plan, wanted, kept)
        grown = {
            user: kept[user] for user, had in before.items() if len(kept[user]) > had
        }
        job.cache.save(grown)
        written += sum(len(kept[user]) - before[user] for user in grown)
        rejected += len(feedback)
        job.usage.rejected_rows += len(feedback)
        if feedback:
            logger.info(
                "Gemini %s: %s: %d rows rejected", job.model, chunk, len(feedback)
            )
    short = {user: count for user, count in target.items() if len(kept[user]) < count}
    if short:
        raise GenerationError(
            _short_message(job, chunk, short, kept, rejected, feedback)
        )
    return _ChunkResult(written, rejected, reasks)


async def _ask_rows(
    job: _RowsJob,
    chunk: _Chunk,
    missing: Mapping[int, int],
    items: Sequence[int],
    kept: Mapping[int, list[_Row]],
    feedback: Sequence[dict[str, Any]],
) -> list[Any]:
    """Ask once for the missing rows; an answer cut short is asked again in halves.

    The halves go one after the other, down to a single user, whose cut answer
    is then retried like any other failure.
    """
    try:
        return await _generate(
            job.client,
            job.model,
            _rows_prompt(job.plan, missing, items, kept, feedback),
            job.config(sum(missing.values())),
            parse=_load_rows,
            usage=job.usage,
            retry=job.retry,
            budget=job.budget,
            task=f"the rows of {chunk}",
            split_truncated=len(missing) > 1,
        )
    except _Truncated as cut:
        users = list(missing)
        halves = users[: len(users) // 2], users[len(users) // 2 :]
        logger.info(
            "Gemini %s: %s: %s; asking for users %s-%s and %s-%s separately",
            job.model,
            chunk,
            cut,
            halves[0][0],
            halves[0][-1],
            halves[1][0],
            halves[1][-1],
        )
        job.usage.splits += 1
        rows: list[Any] = []
        for half in halves:
            part = {user: missing[user] for user in half}
            rows += await _ask_rows(job, chunk, part, items, kept, feedback)
        return rows


def _missing(chunk: _Chunk, kept: Mapping[int, list[_Row]]) -> dict[int, int]:
    """Return how many rows each user of the chunk still needs."""
    return {
        user: wanted - len(kept[user])
        for user, wanted in chunk.wanted.items()
        if len(kept[user]) < wanted
    }


def _prompt_items(plan: _Plan, chunk: _Chunk, missing: Mapping[int, int]) -> list[int]:
    """Choose the catalog items (0-based) the chunk's prompt shows, about 400.

    Categories are shown as the missing rows need them; a user with more rows
    in all than 400 items needs a wider choice, whatever they already have.
    """
    limit = max(MAX_PROMPT_ITEMS, max(chunk.wanted.values()) + MAX_PROMPT_ITEMS // 4)
    if plan.n_items <= limit:
        return list(range(plan.n_items))
    demand: dict[str, float] = {}
    for user, count in missing.items():
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
    feedback: Sequence[dict[str, Any]] = (),
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
    taken = {(row.user_id, row.item_id) for user in missing for row in kept[user]}
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
    job: _RowsJob,
    chunk: _Chunk,
    short: Mapping[int, int],
    kept: Mapping[int, list[_Row]],
    rejected: int,
    feedback: Sequence[dict[str, Any]],
) -> str:
    """Describe a chunk that stayed short after every re-ask."""
    asks = job.max_reasks + 1
    wanted = sum(chunk.wanted.values())
    have = sum(len(kept[user]) for user in chunk.wanted)
    named = [f"user {u}: {len(kept[u])} of {chunk.wanted[u]}" for u in short]
    if len(named) > MAX_NAMED_USERS:
        named[MAX_NAMED_USERS:] = [f"{len(named) - MAX_NAMED_USERS} more"]
    reasons = "; ".join(str(entry["reason"]) for entry in feedback[:3])
    last = f" Last rejections: {reasons}." if reasons else ""
    return (
        f"Gemini model {job.model!r} left {chunk} short: wanted {wanted} rows, "
        f"kept {have}, rejected {rejected} in {asks} asks ({asks - 1} re-asks); "
        f"short users: {', '.join(named)}.{last} Retry later, raise max_reasks, or "
        "use --prisyn-backend=simulate."
    )


def _assemble(
    kept: Mapping[int, list[_Row]], results: Sequence[_ChunkResult], from_cache: int
) -> RowsAnswer:
    """Join every user's rows, sorted by user, time and item."""
    rows = [row for user_rows in kept.values() for row in user_rows]
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
        from_cache=from_cache,
    )


# -- one call, checked and retried ---------------------------------------------------


@dataclass(frozen=True)
class _Retry:
    """How often, how patiently and for how long one question is asked again."""

    attempts: int
    backoff_s: float
    max_backoff_s: float
    max_total_s: float

    def __post_init__(self) -> None:
        """Refuse settings that would never ask at all."""
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.max_total_s <= 0:
            raise ValueError(f"max_total_s must be above 0, got {self.max_total_s}")

    def delay(self, failures: int, hint: float | None) -> float:
        """Return the wait after `failures` failed attempts, honouring a hint."""
        wait = self.backoff_s * 2.0 ** (failures - 1)
        wait *= 1.0 + BACKOFF_JITTER * random.random()
        if hint is not None:
            wait = max(wait, hint)
        return max(0.0, min(wait, self.max_backoff_s))


class _AttemptFailed(Exception):
    """One attempt failed; says why and whether asking again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        truncated: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.truncated = truncated


class _Truncated(Exception):
    """The answer was cut off at the output limit; a smaller ask may fit."""


def _run_async(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `start()` makes to completion, from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _quiet_run(start)
    # This thread already runs an event loop (an async test, a notebook), and
    # asyncio.run cannot nest: run a loop of our own in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1, "prisyn-gemini") as pool:
        return pool.submit(_quiet_run, start).result()


def _quiet_run(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine in a new event loop, without the SDK's aiohttp warning.

    The SDK subclasses aiohttp's ClientSession for every loop, and aiohttp
    warns about it each time: noise in the user's test report, not theirs to fix.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Inheritance class .* from ClientSession is discouraged",
            category=DeprecationWarning,
        )
        return asyncio.run(start())


async def _generate(
    client: genai.Client,
    model: str,
    contents: str,
    config: types.GenerateContentConfig,
    *,
    parse: Callable[[str], T],
    usage: Usage,
    retry: _Retry,
    budget: Budget | None,
    task: str,
    split_truncated: bool = False,
) -> T:
    """Call Gemini and parse the answer, retrying what may succeed next time.

    With `split_truncated`, an answer cut off at the output limit raises
    _Truncated at once instead of being asked again at the same size.
    """
    what = f"Gemini model {model!r} could not write {task}"
    prompt_tokens, output_tokens = _call_estimate(contents, config)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        left = retry.max_total_s - (time.monotonic() - started)
        holding: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if budget is not None:
            holding = budget.hold(
                prompt_tokens + output_tokens,
                budget.estimate_cost(model, prompt_tokens, output_tokens),
                what=f"a call to Gemini model {model!r} for {task}",
            )
        answered = usage.calls
        try:
            with holding:
                response = await _call(client, model, contents, config, left)
                call = usage.add(response, model=model)
                if budget is not None:
                    budget.charge(call)
            return parse(_answer_text(response))
        except _AttemptFailed as failure:
            if usage.calls == answered:
                usage.unanswered += 1
            if split_truncated and failure.truncated:
                raise _Truncated(str(failure)) from None
            elapsed = time.monotonic() - started
            wait = retry.delay(attempt, failure.retry_after)
            why = _why_stop(failure, attempt, elapsed, wait, retry)
            if why is not None:
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                raise GenerationError(
                    _redact(
                        f"{what}: {failure} (after {tries} over {elapsed:.1f} s){why}"
                    )
                ) from failure.__cause__
            logger.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)",
                what,
                _redact(str(failure)),
                wait,
                attempt + 1,
                retry.attempts,
            )
            usage.retries += 1
            await asyncio.sleep(wait)


def _why_stop(
    failure: _AttemptFailed, attempt: int, elapsed: float, wait: float, retry: _Retry
) -> str | None:
    """Return why a failed question is not asked again (ending a message), or None."""
    later = (
        " The data is not cached; run again later, or allow more with "
        f"prisyn_gemini_attempts (now {retry.attempts}) or prisyn_gemini_max_total "
        f"(now {retry.max_total_s:g} s)."
    )
    if not failure.retryable:
        return "."
    if attempt >= retry.attempts:
        return "." + later
    left = retry.max_total_s - elapsed
    if left <= 0:
        return f"; the total time cap of {retry.max_total_s:g} s ran out." + later
    if wait >= left:
        return (
            f"; the next attempt was due in {wait:.1f} s, after the total time cap "
            f"of {retry.max_total_s:g} s." + later
        )
    return None


async def _call(
    client: genai.Client,
    model: str,
    contents: str,
    config: types.GenerateContentConfig,
    time_left: float,
) -> types.GenerateContentResponse:
    """Send one generateContent request; turn API and network errors into failures.

    The client's timeout bounds the call; `time_left` (the rest of the total
    time cap) may cut it shorter.
    """
    from google.genai import errors

    cap = asyncio.timeout(time_left)
    try:
        async with cap:
            return await client.aio.models.generate_content(
                model=model, contents=contents, config=config
            )
    except errors.APIError as error:
        raise _AttemptFailed(
            f"the API answered {_api_error_text(error)}",
            retryable=error.code in RETRYABLE_STATUS,
            retry_after=_retry_delay(error),
        ) from error
    except ValueError as error:
        # A 200 whose body is not JSON (a proxy or captive portal answering in
        # the API's place): the SDK fails to decode it.
        raise _AttemptFailed(
            f"the answer was not the API's JSON ({type(error).__name__}: "
            f"{_clip(str(error))}); is a proxy answering in its place?",
            retryable=True,
        ) from error
    except Exception as error:
        if cap.expired():
            raise _AttemptFailed(
                "no answer before the total time cap ran out", retryable=True
            ) from error
        kind = _network_failure(error)
        if kind is None:
            raise
        detail = _clip(str(error))
        detail = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        raise _AttemptFailed(f"{kind} ({detail})", retryable=True) from error


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
            truncated=bool(text),
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


def _no_sdk_retries() -> types.HttpOptions:
    """Return per-request options that turn the SDK's own retries off.

    Without them the async client, on a refused connection, sleeps 1 to 10 s
    and tries once more, outside our attempts and time cap.
    """
    from google.genai import types

    return types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))


def _prompt_tokens(system: str, contents: str, schema: Any) -> int:
    """Estimate the prompt tokens of a request: instruction, prompt and schema."""
    text = system + contents + json.dumps(schema, ensure_ascii=False)
    return len(text) // CHARS_PER_TOKEN + 1


def _call_estimate(
    contents: str, config: types.GenerateContentConfig
) -> tuple[int, int]:
    """Return a call's estimated prompt tokens and most output tokens."""
    prompt = _prompt_tokens(
        str(config.system_instruction or ""), contents, config.response_json_schema
    )
    return prompt, config.max_output_tokens or 0


def _estimate(
    model: str, calls: Sequence[tuple[int, int]], prices: Mapping[str, Price] | None
) -> Estimate:
    """Sum (prompt, output) token estimates of calls into an Estimate."""
    prompt = sum(tokens for tokens, _ in calls)
    output = sum(tokens for _, tokens in calls)
    price = find_price(model, prices)
    cost = None if price is None else price.cost(prompt, output)
    return Estimate(len(calls), prompt, output, cost)


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
    text = str(error.message or "")
    if text.lstrip().startswith("<"):  # an HTML error page from a proxy or gateway
        text = _HTML_TAG.sub(" ", text)
    message = f": {_clip(text)}" if text.strip() else ""
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
        "ClientPayloadError",
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
