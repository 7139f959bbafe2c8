"""Gemini under failure, at scale and on a budget: real SDK, loopback server only.

Every request goes through the real google-genai client to a GeminiServer on
127.0.0.1 (or to a loopback port nobody listens on); nothing inside the SDK is
patched. Waits are scaled down (RetryInfo of 0.3 s, latencies of 0.1-0.3 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import test_gemini_backend as backend
from fake_gemini import good_rows, perfect_model, spec_reply, task
from gemini_server import GeminiServer, RecordedRequest, Reply
from google import genai
from test_gemini_backend import (
    DESCRIPTIONS,
    FAST,
    HIKERS,
    KEY,
    MODEL,
    _spec,
    answer_in_turn,
    check_rows,
    failure,
    write_rows,
    write_spec,
)

from pytest_prisyn import gemini
from pytest_prisyn.errors import StoreError
from pytest_prisyn.simulate import Simulator

# The backend tests' fixtures, found by pytest under these names: the loopback
# environment (autouse), a GeminiServer, a client aimed at it, a 6-user plan.
_loopback_env = backend._loopback_env
server = backend.server
client = backend.client
simulator = backend.simulator

RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}
# 10 users and 100 rows in chunks of at most 25 rows: five chunks, users
# {1, 2}, {3, 4, 5}, {6, 7}, {8}, {9, 10}; chunk 3 holds user 6.
FIVE_CHUNKS = 25
THIRD_CHUNK_USER = 6


def tech_plan(**sizes: int) -> Simulator:
    """Return a tech plan: 10 users, 40 items, 100 rows and seed 1 unless given."""
    arguments = {"n_users": 10, "n_items": 40, "n_interactions": 100, "seed": 1}
    return Simulator(
        population=[("tech", 1.0)],
        specs={"tech": _spec("tech")},
        **{**arguments, **sizes},
    )


@pytest.fixture
def ten_users() -> Simulator:
    """Return the plan of 10 users, 40 items and 100 rows (FIVE_CHUNKS)."""
    return tech_plan()


def users_of(request: RecordedRequest) -> list[int]:
    """Return the user ids a rows request asks for."""
    return [user["user_id"] for user in task(request)["users"]]


def rows_asked(request: RecordedRequest) -> int:
    """Return how many rows a rows request asks for."""
    return sum(user["interactions"] for user in task(request)["users"])


def gaps(server: GeminiServer) -> list[float]:
    """Return the seconds between consecutive requests the server received."""
    times = [request.received_at for request in server.requests]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def unused_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def same_rows(left: gemini.RowsAnswer, right: gemini.RowsAnswer) -> None:
    """Assert two answers hold the same rows in the same order."""
    for column in ("user_id", "item_id", "rating", "timestamp_s"):
        np.testing.assert_array_equal(getattr(left, column), getattr(right, column))


class MemoryRowsCache:
    """A RowsCache in a dict; rows go through JSON, as on disk."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.puts = 0

    def get(self, key: str) -> list[dict[str, Any]] | None:
        """Return the rows stored under key, or None."""
        text = self.entries.get(key)
        return None if text is None else list(json.loads(text))

    def put(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Store each key's rows."""
        self.puts += 1
        for key, user_rows in rows.items():
            self.entries[key] = json.dumps(user_rows)


class Overlap:
    """A server handler that answers well after a delay, counting calls in flight."""

    def __init__(self, delay: Callable[[], float]) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        """Answer one request, keeping the in-flight count."""
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.delay())
            return perfect_model(request)
        finally:
            with self._lock:
                self.now -= 1


# -- retries, timeouts and the total time cap ------------------------------------------


def test_quota_retry_info_delay_is_waited_for(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.reply_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [RETRY_INFO])
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    answer = write_rows(
        client, simulator, usage=usage, backoff_s=0.0, max_backoff_s=5.0
    )

    check_rows(answer, simulator)
    (gap,) = gaps(server)
    assert 0.3 <= gap < 0.3 + 0.5
    assert usage.retries == 1
    assert usage.calls == 1  # an error is not an answered call


def test_quota_without_details_backs_off_exponentially(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    for _ in range(2):
        server.reply_case("error-429-no-details.json")
    server.set_handler(perfect_model)

    check_rows(
        write_rows(client, simulator, backoff_s=0.1, max_backoff_s=5.0), simulator
    )

    first, second = gaps(server)
    assert 0.1 <= first < 0.1 * (1 + gemini.BACKOFF_JITTER) + 0.3
    assert 0.2 <= second < 0.2 * (1 + gemini.BACKOFF_JITTER) + 0.3


@pytest.mark.parametrize(
    "reply",
    [
        Reply.error(500, "INTERNAL", "An internal error has occurred."),
        Reply.case("error-503-overloaded.json"),
        Reply.case("error-502.html"),
        # Slower than the client's timeout of 0.5 s.
        Reply(200, {"candidates": []}, delay=1.5),
        # Code fences and prose around the JSON, which is broken.
        Reply.case("rows-field-debris.json"),
        # A proxy or captive portal answering 200 with a page, not the API's JSON.
        Reply.raw(200, "<html>Please log in to the hotel wifi</html>", "text/html"),
        pytest.param(
            Reply.case("unknown-finish-reason.json"),
            marks=pytest.mark.filterwarnings(
                "ignore:SOMETHING_NEW is not a valid FinishReason"
            ),
        ),
    ],
    ids=[
        "500",
        "503",
        "html-502",
        "timeout",
        "debris",
        "html-200",
        "unknown-finish-reason",
    ],
)
def test_failed_attempt_is_retried(
    server: GeminiServer, simulator: Simulator, reply: Reply
) -> None:
    client = gemini.make_client(KEY, timeout_s=0.5, base_url=server.url)
    server.reply(reply)
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    check_rows(write_rows(client, simulator, usage=usage), simulator)

    assert server.request_count == 2
    assert usage.retries == 1


@pytest.mark.parametrize(
    ("reply", "answered"),
    [
        (
            Reply.case("error-503-overloaded.json"),
            "503 UNAVAILABLE: The model is overloaded. Please try again later. ",
        ),
        (Reply.case("error-502.html"), "502 Bad Gateway: 502 Bad Gateway "),
    ],
    ids=["503", "html-502"],
)
def test_retries_exhausted_say_what_happened_and_what_to_do(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    reply: Reply,
    answered: str,
) -> None:
    server.set_handler(lambda request: reply)

    message = failure(lambda: write_rows(client, simulator, attempts=3))

    assert message.startswith(
        "Gemini model 'gemini-2.5-flash' could not write the rows of chunk 1 of 1 "
        f"(users 1-6): the API answered {answered}(after 3 attempts over "
    )
    assert "The data is not cached; run again later" in message
    assert "prisyn_gemini_attempts (now 3)" in message
    assert "<h1>" not in message
    assert server.request_count == 3


def test_connection_refused_is_retried_then_reported(simulator: Simulator) -> None:
    client = gemini.make_client(
        KEY, timeout_s=5, base_url=f"http://127.0.0.1:{unused_port()}"
    )
    started = time.monotonic()

    message = failure(lambda: write_rows(client, simulator, attempts=2))

    assert "the connection failed" in message
    assert "after 2 attempts" in message
    # The SDK's own retry (a silent 1-10 s sleep) is off: ours is the only one.
    assert time.monotonic() - started < 1.0


def test_total_time_cap_ends_retries(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.latency = 0.2
    server.set_handler(lambda request: Reply.case("error-503-overloaded.json"))
    started = time.monotonic()

    message = failure(
        lambda: write_rows(client, simulator, attempts=100, max_total_s=1.0)
    )

    took = time.monotonic() - started
    assert 0.9 <= took < 1.6
    assert "the total time cap of 1 s ran out" in message
    assert 3 <= server.request_count <= 6


def test_total_time_cap_cuts_a_slow_call_short(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply(dataclasses.replace(Reply.success(spec_reply()), delay=5))
    started = time.monotonic()

    message = failure(lambda: write_spec(client, max_total_s=0.5))

    assert time.monotonic() - started < 1.5
    assert "no answer before the total time cap ran out" in message
    assert "(after 1 attempt over 0." in message


def test_retry_info_beyond_the_time_left_gives_up_at_once(
    server: GeminiServer, client: genai.Client
) -> None:
    long_wait = {**RETRY_INFO, "retryDelay": "30s"}
    server.reply_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [long_wait])
    started = time.monotonic()

    message = failure(lambda: write_spec(client, max_backoff_s=60.0, max_total_s=2.0))

    assert time.monotonic() - started < 1.0
    assert "429 RESOURCE_EXHAUSTED" in message
    assert "next attempt was due in 30.0 s, after the total time cap of 2 s" in message
    assert server.request_count == 1


# -- what the answer says: truncation, thinking, safety, unknown reasons ---------------


def test_truncated_answers_are_asked_again_in_smaller_pieces(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    limit = 12  # the output limit fits 12 rows; every user needs 5 to 19

    def cut_above_limit(request: RecordedRequest) -> Reply:
        if rows_asked(request) <= limit or len(users_of(request)) == 1:
            return perfect_model(request)
        text = json.dumps({"rows": good_rows(request)})
        return Reply.success(text[: len(text) // 2], finish_reason="MAX_TOKENS")

    server.set_handler(cut_above_limit)
    usage = gemini.Usage()

    answer = write_rows(client, ten_users, usage=usage, chunk_rows=FIVE_CHUNKS)

    check_rows(answer, ten_users)
    assert usage.splits >= 3
    assert usage.retries == 0
    answered = [
        r for r in server.requests if rows_asked(r) <= limit or len(users_of(r)) == 1
    ]
    asked_once = sorted(user for request in answered for user in users_of(request))
    assert asked_once == list(range(1, 11))


def test_one_user_cut_off_every_time_fails_after_the_attempts(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def always_cut(request: RecordedRequest) -> Reply:
        text = json.dumps({"rows": good_rows(request)})
        return Reply.success(text[: len(text) // 2], finish_reason="MAX_TOKENS")

    server.set_handler(always_cut)

    message = failure(lambda: write_rows(client, simulator, attempts=3))

    assert "MAX_TOKENS" in message
    assert "after 3 attempts" in message
    # Six users, then three, then one user three times.
    assert [users_of(r) for r in server.requests] == [
        [1, 2, 3, 4, 5, 6],
        [1, 2, 3],
        [1],
        [1],
        [1],
    ]


def test_cut_off_repetition_loop_is_split(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    # rows-repetition-loop.json: one row over and over, then cut at the limit.
    def loop_then_cut(request: RecordedRequest) -> Reply:
        row = json.dumps(good_rows(request)[0])
        return Reply.success(
            '{"rows": [' + ", ".join([row] * 40)[:-30], finish_reason="MAX_TOKENS"
        )

    answer_in_turn(server, loop_then_cut, perfect_model, perfect_model)

    check_rows(write_rows(client, simulator), simulator)

    assert server.request_count == 3


def test_empty_answer_after_thinking_is_retried_not_split(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.reply_case("empty-after-thinking.json")
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    check_rows(write_rows(client, simulator, usage=usage), simulator)

    first, second = server.requests
    assert users_of(first) == users_of(second) == [1, 2, 3, 4, 5, 6]
    assert usage.splits == 0
    assert usage.thinking_tokens == 8190
    assert first.generation_config["thinkingConfig"] in (
        {"thinkingBudget": 0},
        {"thinking_budget": 0},
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply.case("blocked-prompt.json"), "blocked (block reason SAFETY)"),
        (
            Reply(
                200,
                {
                    "candidates": [
                        {"content": {"role": "model"}, "finishReason": "SAFETY"}
                    ],
                    "modelVersion": "gemini-2.5-flash-001",
                },
            ),
            "finish reason SAFETY",
        ),
    ],
    ids=["blocked-prompt", "safety-finish"],
)
def test_safety_refusals_fail_at_once(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    reply: Reply,
    expected: str,
) -> None:
    server.set_handler(lambda request: reply)

    message = failure(lambda: write_rows(client, simulator))

    assert expected in message
    assert "after 1 attempt " in message
    assert "run again later" not in message
    assert server.request_count == 1


# -- rows that break the schema's meaning ----------------------------------------------


def test_debris_inside_fields_is_rejected_and_fed_back(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def leaky(request: RecordedRequest) -> Reply:
        rows = good_rows(request)
        rows[0]["timestamp"] += " (end of list)"
        rows[1]["item_id"] = f"{rows[1]['item_id']}```"
        rows[2]["rating"] = "4.0 stars"
        return Reply.success({"rows": rows})

    answer_in_turn(server, leaky, perfect_model)
    usage = gemini.Usage()

    answer = write_rows(client, simulator, usage=usage)

    check_rows(answer, simulator)
    assert answer.rejected == usage.rejected_rows == 3
    assert answer.reasks == usage.reasks == 1
    reasons = [entry["reason"] for entry in task(server.requests[1])["rejected_rows"]]
    assert any("(end of list)" in reason for reason in reasons)
    assert any("```" in reason for reason in reasons)
    assert any("4.0 stars" in reason for reason in reasons)


def test_repetition_loop_duplicates_are_dropped_and_the_rest_reasked(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def loop(request: RecordedRequest) -> Reply:
        return Reply.success({"rows": [good_rows(request)[0]] * 50})

    answer_in_turn(server, loop, perfect_model)

    answer = write_rows(client, simulator)

    check_rows(answer, simulator)
    assert answer.rejected == 49
    second = task(server.requests[1])
    assert sum(user["interactions"] for user in second["users"]) == 59
    assert "already has item" in second["rejected_rows"][0]["reason"]


# -- concurrency -----------------------------------------------------------------------


def test_concurrent_chunks_give_the_same_rows_as_sequential(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    jitter = random.Random(7)
    handler = Overlap(delay=lambda: jitter.uniform(0.0, 0.15))
    server.set_handler(handler)

    sequential = write_rows(client, ten_users, chunk_rows=10, concurrency=1)
    assert handler.most == 1
    parallel = write_rows(client, ten_users, chunk_rows=10, concurrency=8)

    same_rows(sequential, parallel)
    check_rows(parallel, ten_users)
    assert handler.most > 1


def test_concurrency_is_bounded(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    handler = Overlap(delay=lambda: 0.15)
    server.set_handler(handler)

    write_rows(client, ten_users, chunk_rows=10, concurrency=3)

    assert handler.most == 3


def test_rows_mode_works_inside_a_running_event_loop(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.set_handler(perfect_model)
    threads: list[int] = []

    async def async_test() -> gemini.RowsAnswer:
        # A synchronous fixture called from an async test blocks the loop.
        return write_rows(
            client, simulator, progress=lambda p: threads.append(threading.get_ident())
        )

    check_rows(asyncio.run(async_test()), simulator)
    assert threads
    assert threading.get_ident() not in threads


def test_spec_mode_works_inside_a_running_event_loop(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply()))

    async def async_test() -> gemini.SpecAnswer:
        return write_spec(client)

    assert asyncio.run(async_test()).spec.span_days == 240


def test_bad_concurrency_is_refused(client: genai.Client, simulator: Simulator) -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        write_rows(client, simulator, concurrency=0)


# -- resuming and growing from the rows cache ------------------------------------------


def rows_of(answer: gemini.RowsAnswer) -> set[tuple[int, int, float, int]]:
    """Return an answer's rows as a set of (user, item, rating, seconds)."""
    columns = (answer.user_id, answer.item_id, answer.rating, answer.timestamp_s)
    return set(zip(*(column.tolist() for column in columns), strict=True))


def asked_per_user(server: GeminiServer) -> dict[int, int]:
    """Return how many rows the server was asked for, per user."""
    asked: dict[int, int] = {}
    for request in server.requests:
        for user in task(request)["users"]:
            user_id = user["user_id"]
            asked[user_id] = asked.get(user_id, 0) + user["interactions"]
    return asked


@pytest.mark.parametrize(
    ("concurrency", "cached_users", "asked_next"),
    [(1, 5, [[6, 7], [8], [9, 10]]), (5, 8, [[6, 7]])],
    ids=["sequential", "concurrent"],
)
def test_failed_run_keeps_finished_chunks_and_the_next_asks_only_the_rest(
    server: GeminiServer,
    client: genai.Client,
    ten_users: Simulator,
    concurrency: int,
    cached_users: int,
    asked_next: list[list[int]],
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(
        lambda request: (
            Reply.case("error-503-overloaded.json")
            if THIRD_CHUNK_USER in users_of(request)
            else perfect_model(request)
        )
    )

    message = failure(
        lambda: write_rows(
            client,
            ten_users,
            chunk_rows=FIVE_CHUNKS,
            rows_cache=cache,
            concurrency=concurrency,
        )
    )

    assert "chunk 3 of 5 (users 6-7)" in message
    written = 2 if concurrency == 1 else 4
    assert (
        f"{written} of 5 chunks were written. Every row accepted is kept: the "
        "next run asks only for the rest." in message
    )
    # One entry per user whose rows were accepted; after a failure no chunk starts.
    assert len(cache.entries) == cached_users
    server.reset()
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    resumed = write_rows(
        client,
        ten_users,
        chunk_rows=FIVE_CHUNKS,
        rows_cache=cache,
        usage=usage,
        concurrency=1,
    )

    check_rows(resumed, ten_users)
    assert [users_of(request) for request in server.requests] == asked_next
    asked = sum(rows_asked(request) for request in server.requests)
    assert usage.rows_from_cache == resumed.from_cache == 100 - asked
    assert len(cache.entries) == 10
    server.reset()
    server.set_handler(perfect_model)
    same_rows(resumed, write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS))


def test_rows_accepted_before_a_chunk_failed_are_kept(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    wanted = dict(enumerate(ten_users.counts.tolist(), 1))

    def half_then_overloaded(request: RecordedRequest) -> Reply:
        """Answer the first ask with half of every user's rows, then fail."""
        if server.request_count > 1:
            return Reply.case("error-503-overloaded.json")
        rows = good_rows(request)
        half = {user: wanted[user] // 2 for user in users_of(request)}
        return Reply.success(
            {"rows": [row for row in rows if _take(half, row["user_id"])]}
        )

    server.set_handler(half_then_overloaded)

    message = failure(lambda: write_rows(client, ten_users, rows_cache=cache))

    assert "503 UNAVAILABLE" in message
    # The first ask wanted every row; the re-ask for the other half failed.
    assert rows_asked(server.requests[0]) == 100
    assert rows_asked(server.requests[1]) == 100 - sum(c // 2 for c in wanted.values())
    server.reset()
    server.set_handler(perfect_model)

    answer = write_rows(client, ten_users, rows_cache=cache)

    check_rows(answer, ten_users)
    paid_again = asked_per_user(server)
    assert paid_again == {user: count - count // 2 for user, count in wanted.items()}
    assert answer.from_cache == sum(count // 2 for count in wanted.values())
    # The rows already held are named, so the model does not write them again.
    (request,) = server.requests
    assert len(task(request)["already_taken"]) == answer.from_cache


def _take(budget: dict[int, int], user: int) -> bool:
    """Spend one of a user's budget; return whether there was one left."""
    if budget[user] <= 0:
        return False
    budget[user] -= 1
    return True


def test_growing_a_request_asks_only_for_the_extra_rows(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    small = write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache)
    bigger = tech_plan(n_interactions=250)
    server.reset()
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    grown = write_rows(
        client, bigger, chunk_rows=FIVE_CHUNKS, rows_cache=cache, usage=usage
    )

    check_rows(grown, bigger)
    before = ten_users.counts.tolist()
    after = bigger.counts.tolist()
    assert all(a >= b for a, b in zip(after, before, strict=True))
    extra = {
        user: a - b for user, (a, b) in enumerate(zip(after, before, strict=True), 1)
    }
    assert asked_per_user(server) == {u: n for u, n in extra.items() if n}
    assert sum(rows_asked(request) for request in server.requests) == 150
    # Every row paid for the first time is part of the bigger dataset.
    assert rows_of(small) <= rows_of(grown)
    assert grown.from_cache == usage.rows_from_cache == 100
    server.reset()
    server.set_handler(perfect_model)

    shrunk = write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache)

    assert server.request_count == 0
    same_rows(small, shrunk)


def test_whole_request_from_the_rows_cache_makes_no_call(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    first = write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache)
    calls = server.request_count

    again = write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache)

    same_rows(first, again)
    assert server.request_count == calls
    assert again.from_cache == 100
    other_model = gemini.write_rows(
        client,
        "gemini-2.5-flash-lite",
        ten_users,
        descriptions=DESCRIPTIONS,
        usage=gemini.Usage(),
        chunk_rows=FIVE_CHUNKS,
        rows_cache=cache,
    )
    assert other_model.from_cache == 0
    assert server.request_count == calls + 5


def test_cached_rows_are_keyed_by_what_shapes_them(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    write_rows(client, ten_users, rows_cache=cache)
    other_seed = tech_plan(seed=2)
    other_description = {**DESCRIPTIONS, "tech": "Night owls who buy only keyboards."}

    for plan, descriptions in [
        (other_seed, DESCRIPTIONS),
        (ten_users, other_description),
    ]:
        answer = gemini.write_rows(
            client,
            MODEL,
            plan,
            descriptions=descriptions,
            usage=gemini.Usage(),
            rows_cache=cache,
        )
        assert answer.from_cache == 0


def test_regenerating_reads_no_cached_rows_but_replaces_them(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    first = write_rows(client, ten_users, rows_cache=cache)
    calls = server.request_count

    def an_hour_later(request: RecordedRequest) -> Reply:
        """The perfect model's rows, each at 20:xx instead of 19:xx."""
        rows = good_rows(request)
        for row in rows:
            row["timestamp"] = row["timestamp"].replace("T19:", "T20:")
        return Reply.success({"rows": rows})

    server.set_handler(an_hour_later)

    again = gemini.write_rows(
        client,
        MODEL,
        ten_users,
        descriptions=DESCRIPTIONS,
        usage=gemini.Usage(),
        rows_cache=cache,
        reuse=False,
    )

    assert server.request_count == 2 * calls
    assert again.from_cache == 0
    assert np.all(again.timestamp_s - first.timestamp_s == 3600)
    replayed = write_rows(client, ten_users, rows_cache=cache)
    same_rows(replayed, again)


def first_user_cached(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> tuple[MemoryRowsCache, str, list[dict[str, Any]]]:
    """Write the plan into a fresh rows cache; return it, user 1's key and rows."""
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    write_rows(client, simulator, rows_cache=cache)
    key = next(iter(cache.entries))
    return cache, key, json.loads(cache.entries[key])


def test_cached_rows_that_do_not_fit_are_asked_again(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, key, rows = first_user_cached(server, client, simulator)
    user = rows[0]["user_id"]
    rows[0]["rating"] = 11.0
    cache.put({key: rows})
    server.reset()
    server.set_handler(perfect_model)

    answer = write_rows(client, simulator, rows_cache=cache)

    check_rows(answer, simulator)
    assert answer.from_cache == simulator.n_interactions - 1
    assert asked_per_user(server) == {user: 1}
    assert (
        f"dropped 1 cached row of user {user} that no longer fit (rating 11.0 is "
        "not one of" in caplog.text
    )
    assert 11.0 not in [row["rating"] for row in json.loads(cache.entries[key])]


def test_cached_rows_that_do_not_fit_are_dropped_from_the_cache(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, key, rows = first_user_cached(server, client, simulator)
    cache.put({key: rows + rows})  # every row twice, as a repetition loop writes
    calls = server.request_count

    answer = write_rows(client, simulator, rows_cache=cache)

    check_rows(answer, simulator)
    assert server.request_count == calls
    assert f"dropped {len(rows)} cached rows of user" in caplog.text
    assert json.loads(cache.entries[key]) == rows
    caplog.clear()
    write_rows(client, simulator, rows_cache=cache)
    assert "dropped" not in caplog.text


def test_users_holding_many_rows_are_chunked_so_every_held_pair_is_shown(
    server: GeminiServer, client: genai.Client
) -> None:
    def plan(n_interactions: int) -> Simulator:
        return tech_plan(n_users=60, n_items=200, n_interactions=n_interactions, seed=4)

    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    write_rows(client, plan(6000), rows_cache=cache)
    server.reset()
    # The perfect model avoids exactly the pairs it is shown: any held pair left
    # out of already_taken would come back as a duplicate and be re-asked.
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    grown = write_rows(client, plan(6060), rows_cache=cache, usage=usage)

    check_rows(grown, plan(6060))
    assert usage.reasks == 0
    assert usage.rejected_rows == 0
    for request in server.requests:
        assert len(task(request).get("already_taken", [])) <= gemini.MAX_TAKEN_PAIRS
    # Each of the 60 users, holding 100 rows, needs one more: 6,060 held pairs
    # in all, so at least four chunks.
    assert sum(rows_asked(request) for request in server.requests) == 60
    assert server.request_count >= 4


def test_a_user_with_more_rows_than_an_ask_holds_is_asked_in_turns(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    server.set_handler(perfect_model)
    heaviest = int(np.argmax(ten_users.counts)) + 1
    wanted = int(ten_users.counts.max())

    answer = write_rows(client, ten_users, chunk_rows=4)

    check_rows(answer, ten_users)
    asks = [task(request) for request in server.requests]
    assert all(rows_asked(request) <= 4 for request in server.requests)
    turns = [ask for ask in asks if heaviest in [u["user_id"] for u in ask["users"]]]
    assert len(turns) == -(-wanted // 4)
    # Each turn is shown what the turns before it wrote.
    held = [
        sum(pair[0] == heaviest for pair in ask.get("already_taken", []))
        for ask in turns
    ]
    assert held == [4 * turn for turn in range(len(turns))]


def test_a_failed_single_chunk_says_its_rows_are_kept(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def half_then_nothing(request: RecordedRequest) -> Reply:
        rows = good_rows(request)
        return Reply.success({"rows": rows[: len(rows) // 2] if len(rows) > 30 else []})

    server.set_handler(half_then_nothing)

    message = failure(
        lambda: write_rows(client, simulator, rows_cache=MemoryRowsCache())
    )

    assert "wanted 60 rows, kept 30" in message
    assert message.endswith(
        "Every row accepted is kept: the next run asks only for the rest."
    )
    assert "chunks were written" not in message


def test_chunks_of_scattered_users_name_them_in_runs() -> None:
    chunk = gemini._Chunk(1, 4, {2: 5, 3: 5, 4: 5, 9: 1, 12: 2, 13: 2})

    assert str(chunk) == "chunk 2 of 4 (users 2-4, 9, 12-13)"
    many = gemini._Chunk(0, 1, {user: 1 for user in range(1, 40, 2)})
    assert str(many).endswith("(users 1, 3, 5, 7, 9, 11, 13, 15, ... (20 users))")


class BrokenRowsCache:
    """A RowsCache whose disk has failed."""

    def get(self, key: str) -> list[dict[str, Any]] | None:
        """Fail to read."""
        raise StoreError("cannot read the cache: disk I/O error")

    def put(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Fail to write."""
        raise StoreError("cannot write the cache: disk full")


def test_unusable_rows_cache_only_costs_the_caching(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.set_handler(perfect_model)

    answer = write_rows(client, simulator, rows_cache=BrokenRowsCache())

    check_rows(answer, simulator)
    assert "rows cache unreadable, asking for every row: cannot read" in caplog.text
    assert "rows were not cached (the run goes on without keeping them): " in (
        caplog.text
    )
    # Told once each, not once per user.
    assert caplog.text.count("cannot write the cache: disk full") == 1
    assert caplog.text.count("cannot read the cache") == 1


# -- usage, cost and estimates ---------------------------------------------------------


def test_usage_counts_every_call_and_prices_it(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.reply_case("error-503-overloaded.json")
    server.set_handler(
        lambda request: Reply.success(
            {"rows": good_rows(request)},
            usage={
                "prompt_token_count": 1_000_000,
                "candidates_token_count": 100_000,
                "thoughts_token_count": 100_000,
            },
        )
    )
    usage = gemini.Usage()

    write_rows(client, simulator, usage=usage)

    (call,) = usage.per_call
    assert call == gemini.CallUsage(
        model=MODEL,
        model_version="gemini-2.5-flash-001",
        prompt_tokens=1_000_000,
        output_tokens=100_000,
        thinking_tokens=100_000,
    )
    # $0.30 per million prompt tokens, $2.50 per million output + thinking tokens.
    assert usage.cost() == pytest.approx(0.30 + 0.2 * 2.50)
    assert usage.cost({MODEL: gemini.Price(1.0, 10.0)}) == pytest.approx(1.0 + 2.0)
    assert usage.cost_note() is None
    data = json.loads(json.dumps(usage.as_dict()))
    assert data["retries"] == 1
    assert data["calls"] == 1
    assert data["cost_usd"] == pytest.approx(0.80)
    assert data["per_call"][0]["thinking_tokens"] == 100_000
    assert data["model_versions"] == ["gemini-2.5-flash-001"]
    assert {"reasks", "rejected_rows", "splits", "rows_from_cache"} <= set(data)


def test_unknown_model_has_no_cost_and_says_why(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply()))
    usage = gemini.Usage()

    gemini.write_spec(client, "gemini-9-ultra", HIKERS, usage=usage, **FAST)

    assert usage.cost() is None
    note = usage.cost_note()
    assert note is not None
    assert "'gemini-9-ultra'" in note
    assert "prisyn_prices" in note
    assert usage.as_dict()["cost_usd"] is None
    priced = {"gemini-9-ultra": gemini.Price(input_per_million=1, output_per_million=2)}
    assert usage.cost(priced) == pytest.approx(
        (usage.prompt_tokens + 2 * usage.output_tokens) / 1e6
    )


def test_prices_know_pinned_versions_and_nothing_else() -> None:
    flash = gemini.PRICES["gemini-2.5-flash"]
    assert flash == gemini.Price(input_per_million=0.30, output_per_million=2.50)
    assert gemini.find_price("models/gemini-2.5-flash-001") == flash
    assert gemini.find_price("gemini-2.5-flash-lite") is None
    assert gemini.find_price("gemini-2.5-pro") is None
    override = gemini.Price(0.1, 0.4)
    assert gemini.find_price(
        "gemini-2.5-flash-lite", {"gemini-2.5-flash-lite": override}
    )
    assert gemini.find_price("gemini-2.5-flash", {"other": override}) == flash


def test_rows_estimate_is_close_to_what_the_run_spends(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    estimate = gemini.estimate_rows(
        ten_users, MODEL, chunk_rows=FIVE_CHUNKS, descriptions=DESCRIPTIONS
    )
    assert server.request_count == 0
    write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, usage=usage)

    assert estimate.calls == usage.calls == 5
    assert usage.prompt_tokens <= estimate.prompt_tokens < 2 * usage.prompt_tokens
    # The loopback server counts four characters a token; Gemini spends more
    # on digits, which the estimate assumes.
    assert usage.output_tokens < estimate.output_tokens < 3 * usage.output_tokens
    cost = usage.cost()
    assert cost is not None
    assert estimate.cost is not None
    assert cost / 3 < estimate.cost < 3 * cost
    assert json.loads(json.dumps(estimate.as_dict()))["calls"] == 5


def test_rows_estimate_leaves_out_cached_chunks(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    cache = MemoryRowsCache()
    server.set_handler(perfect_model)
    write_rows(client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache)
    del cache.entries[next(iter(cache.entries))]

    estimate = gemini.estimate_rows(
        ten_users,
        MODEL,
        chunk_rows=FIVE_CHUNKS,
        descriptions=DESCRIPTIONS,
        rows_cache=cache,
    )

    assert estimate.calls == 1


def test_spec_estimate_is_close_to_what_the_call_spends(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply()))
    usage = gemini.Usage()

    estimate = gemini.estimate_spec(HIKERS, MODEL)
    write_spec(client, usage=usage)

    assert estimate.calls == 1
    # The estimate counts the response schema too; the loopback server does not.
    schema_tokens = len(json.dumps(gemini.spec_schema())) // 4
    assert 0 <= estimate.prompt_tokens - usage.prompt_tokens <= schema_tokens + 2
    assert estimate.cost == pytest.approx(
        (estimate.prompt_tokens * 0.30 + estimate.output_tokens * 2.50) / 1e6
    )
    assert gemini.estimate_spec(HIKERS, "gemini-9-ultra").cost is None


# -- budget ----------------------------------------------------------------------------


def budget_refusal(call: Callable[[], object]) -> gemini.BudgetExceededError:
    """Run call, expect a BudgetExceededError, and return it."""
    with pytest.raises(gemini.BudgetExceededError) as caught:
        call()
    assert KEY not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("unit", ["tokens", "dollars"])
def test_budget_refuses_before_the_call_that_would_pass_it(
    server: GeminiServer, client: genai.Client, ten_users: Simulator, unit: str
) -> None:
    server.set_handler(perfect_model)

    def limited(limit: float) -> gemini.Budget:
        if unit == "tokens":
            return gemini.Budget(limit_tokens=int(limit))
        return gemini.Budget(limit_dollars=limit)

    def spent(budget: gemini.Budget) -> float:
        return budget.spent_tokens if unit == "tokens" else budget.spent_dollars

    def run(budget: gemini.Budget) -> object:
        return write_rows(
            client, ten_users, chunk_rows=FIVE_CHUNKS, concurrency=1, budget=budget
        )

    probe = budget_refusal(lambda: run(limited(0)))
    assert server.request_count == 0
    first_call = probe.next_tokens if unit == "tokens" else probe.next_cost
    assert first_call
    budget = limited(first_call)

    refused = budget_refusal(lambda: run(budget))

    assert server.request_count == 1
    assert 0 < spent(budget) <= first_call
    next_call = refused.next_tokens if unit == "tokens" else refused.next_cost
    assert next_call is not None
    assert spent(budget) + next_call > first_call
    message = str(refused)
    assert message.startswith(
        "Gemini budget reached: a call to Gemini model 'gemini-2.5-flash' for the "
        f"rows of chunk 2 of 5 (users 3-5) could use up to {refused.next_tokens:,} "
        f"tokens (${refused.next_cost:.4f}), but {budget.spent_tokens:,} tokens "
        f"(${budget.spent_dollars:.4f}) are spent of a limit of "
    )
    limit = f"{first_call:,} tokens" if unit == "tokens" else f"${first_call:,.2f}"
    assert f"limit of {limit}." in message
    assert "Raise the limit with --prisyn-budget" in message
    assert "1 of 5 chunks were written." in message


def test_dollar_budget_refuses_an_unpriced_model(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply()))

    refused = budget_refusal(
        lambda: gemini.write_spec(
            client,
            "gemini-9-ultra",
            HIKERS,
            usage=gemini.Usage(),
            budget=gemini.Budget(limit_dollars=100.0),
        )
    )

    assert server.request_count == 0
    assert "no known price" in str(refused)
    assert "prisyn_prices" in str(refused)


def test_budget_counts_calls_in_flight(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    server.set_handler(Overlap(delay=lambda: 0.2))
    probe = budget_refusal(
        lambda: write_rows(
            client,
            ten_users,
            chunk_rows=FIVE_CHUNKS,
            budget=gemini.Budget(limit_tokens=1),
        )
    )
    limit = int(probe.next_tokens * 2.5)
    budget = gemini.Budget(limit_tokens=limit)

    budget_refusal(
        lambda: write_rows(
            client, ten_users, chunk_rows=FIVE_CHUNKS, concurrency=8, budget=budget
        )
    )

    # Five chunks start together; only the calls whose worst case fits go out.
    assert 1 <= server.request_count <= 3
    assert budget.spent_tokens <= limit
    assert budget.as_dict()["spent_tokens"] == budget.spent_tokens


def test_budget_is_shared_by_spec_and_rows_calls(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.set_handler(
        lambda request: (
            Reply.success(spec_reply())
            if "behaviour spec" in request.system_text
            else perfect_model(request)
        )
    )
    budget = gemini.Budget(limit_tokens=10**9)
    usage = gemini.Usage()

    write_spec(client, usage=usage, budget=budget)
    write_rows(client, simulator, usage=usage, budget=budget)

    assert budget.spent_tokens == usage.tokens > 0


def test_budget_refuses_bad_limits() -> None:
    with pytest.raises(ValueError, match="limit_tokens"):
        gemini.Budget(limit_tokens=-1)
    with pytest.raises(ValueError, match="limit_dollars"):
        gemini.Budget(limit_dollars=-0.01)


# -- progress --------------------------------------------------------------------------


def test_progress_is_reported_after_each_chunk(
    server: GeminiServer, client: genai.Client, ten_users: Simulator
) -> None:
    server.set_handler(perfect_model)
    events: list[gemini.Progress] = []
    threads: set[int] = set()

    def record(event: gemini.Progress) -> None:
        events.append(event)
        threads.add(threading.get_ident())

    cache = MemoryRowsCache()
    write_rows(
        client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache, progress=record
    )

    assert [event.chunks_done for event in events] == [0, 1, 2, 3, 4, 5]
    assert {event.chunks_total for event in events} == {5}
    assert events[-1].rows_kept == 100
    assert events[-1].rows_rejected == 0
    assert events[-1].from_cache == 0
    tokens = [event.tokens for event in events]
    assert tokens == sorted(tokens)
    assert tokens[0] == 0
    assert tokens[1] > 0
    assert threads == {threading.get_ident()}
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].chunks_done = 9  # type: ignore[misc]
    events.clear()

    write_rows(
        client, ten_users, chunk_rows=FIVE_CHUNKS, rows_cache=cache, progress=record
    )

    assert events == [
        gemini.Progress(
            chunks_done=0,
            chunks_total=0,
            rows_kept=100,
            rows_rejected=0,
            tokens=0,
            from_cache=100,
        )
    ]


def test_progress_counts_rejected_rows(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def loop(request: RecordedRequest) -> Reply:
        return Reply.success({"rows": [good_rows(request)[0]] * 5})

    answer_in_turn(server, loop, perfect_model)
    events: list[gemini.Progress] = []

    write_rows(client, simulator, progress=events.append)

    start, event = events
    assert (start.chunks_done, start.rows_kept, start.rows_rejected) == (0, 0, 0)
    assert event.rows_rejected == 4
    assert event.rows_kept == 60


# -- the key stays secret --------------------------------------------------------------


def test_key_never_reaches_messages_or_logs(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = []
    with caplog.at_level("DEBUG"):
        for reply in (
            Reply.case("error-429-no-details.json"),
            Reply.case("error-502.html"),
            Reply.case("error-400-schema-too-complex.json"),
            Reply.case("blocked-prompt.json"),
            Reply.error(403, "PERMISSION_DENIED", "API key not valid."),
        ):
            server.reset()
            server.set_handler(lambda request, reply=reply: reply)
            messages.append(failure(lambda: write_rows(client, simulator, attempts=2)))
        refused = gemini.make_client(
            KEY, timeout_s=5, base_url=f"http://127.0.0.1:{unused_port()}"
        )
        messages.append(failure(lambda: write_rows(refused, simulator, attempts=2)))
        messages.append(
            str(
                budget_refusal(
                    lambda: write_rows(
                        client, simulator, budget=gemini.Budget(limit_tokens=1)
                    )
                )
            )
        )

    assert all(KEY not in message for message in messages)
    assert caplog.records
    assert KEY not in caplog.text
    assert all(KEY not in str(record.args) for record in caplog.records)
