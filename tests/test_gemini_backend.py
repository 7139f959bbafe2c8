"""The Gemini backend, through the real google-genai SDK and a loopback server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fake_gemini import good_rows, perfect_model, spec_reply, task
from gemini_server import GeminiServer, RecordedRequest, Reply
from google import genai

from pytest_prisyn import gemini
from pytest_prisyn.errors import GenerationError
from pytest_prisyn.profiles import BUILTIN, Profile
from pytest_prisyn.simulate import EPOCH_SECONDS, Simulator
from pytest_prisyn.spec import BehaviorSpec

MODEL = "gemini-2.5-flash"
KEY = "test-key-123"
FAST: dict[str, float] = {"backoff_s": 0.0, "max_backoff_s": 0.0}
HIKERS = Profile(
    "hikers",
    "Weekend hikers who buy boots, tents and trail guides and rate gear harshly.",
    None,
    source="test",
)
DESCRIPTIONS = {name: profile.description for name, profile in BUILTIN.items()}


@pytest.fixture(autouse=True)
def _loopback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK off proxies, Vertex AI and any endpoint but ours."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in (
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[GeminiServer]:
    """Run a GeminiServer for one test."""
    with GeminiServer() as srv:
        yield srv


@pytest.fixture
def client(server: GeminiServer) -> genai.Client:
    """Return a client aimed at the loopback server."""
    return gemini.make_client(KEY, timeout_s=10, base_url=server.url)


@pytest.fixture
def simulator() -> Simulator:
    """Return the plan of a small tech dataset: 6 users, 40 items, 60 rows."""
    return Simulator(
        population=[("tech", 1.0)],
        specs={"tech": _spec("tech")},
        n_users=6,
        n_items=40,
        n_interactions=60,
        seed=1,
    )


def _spec(name: str) -> BehaviorSpec:
    spec = BUILTIN[name].spec
    assert spec is not None
    return spec


def write_spec(client: genai.Client, **options: Any) -> gemini.SpecAnswer:
    """Run spec mode for the hikers profile with fast retries."""
    usage = options.pop("usage", gemini.Usage())
    return gemini.write_spec(client, MODEL, HIKERS, usage=usage, **{**FAST, **options})


def failure(call: Callable[[], object]) -> str:
    """Run call, expect a GenerationError, and return its message."""
    with pytest.raises(GenerationError) as caught:
        call()
    message = str(caught.value)
    assert KEY not in message
    assert KEY not in repr(caught.value.__cause__)
    return message


def answer_in_turn(
    server: GeminiServer, *handlers: Callable[[RecordedRequest], Reply]
) -> None:
    """Answer the n-th request with the n-th handler."""
    turns = iter(handlers)
    server.set_handler(lambda request: next(turns)(request))


def keys_everywhere(node: Any) -> set[str]:
    """Return every dict key of a nested JSON value."""
    if isinstance(node, dict):
        return set(node).union(*(keys_everywhere(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(keys_everywhere(v) for v in node))
    return set()


# -- client ------------------------------------------------------------------------


def test_make_client_sends_the_key_to_the_base_url(server: GeminiServer) -> None:
    client = gemini.make_client(KEY, timeout_s=5, base_url=server.url)
    server.reply_json(spec_reply())

    write_spec(client)

    (request,) = server.requests
    assert request.api_key == KEY
    assert request.model == MODEL
    assert request.action == "generateContent"


def test_make_client_without_base_url_honours_the_sdk_override(
    server: GeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    server.reply_json(spec_reply())

    write_spec(gemini.make_client(KEY, timeout_s=5))

    assert server.request_count == 1


# -- spec mode -----------------------------------------------------------------------


def test_spec_mode_builds_the_spec_and_item_names(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply()))
    usage = gemini.Usage()

    answer = write_spec(client, usage=usage)

    assert answer.spec.mix() == pytest.approx(
        {"hiking-boots": 0.3, "tents": 0.25, "trail-guides": 0.2, "outdoor": 0.25}
    )
    assert answer.spec.star_shares == pytest.approx([0.08, 0.1, 0.2, 0.32, 0.3])
    assert answer.spec.span_days == 240
    assert answer.spec.rating_scale.values() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(answer.item_names["hiking-boots"]) == 25
    assert answer.item_names["tents"] == ["Alpine Dome 2", "Summit Tarp"]
    assert set(answer.item_names) == {c.category for c in answer.spec.categories}
    assert usage.calls == 1
    assert usage.prompt_tokens > 0
    assert usage.output_tokens > 0
    assert usage.model_versions == ["gemini-2.5-flash-001"]


def test_spec_mode_request_asks_for_schema_constrained_json(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_json(spec_reply())

    write_spec(client)

    (request,) = server.requests
    config = request.generation_config
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    assert "responseSchema" not in config
    assert "default" not in keys_everywhere(schema)
    assert "additionalProperties" not in keys_everywhere(schema)
    assert "title" not in keys_everywhere(schema)
    assert set(schema["required"]) == set(gemini.SpecReply.model_fields)
    assert config["temperature"] == pytest.approx(0.4)
    thinking = config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    assert HIKERS.description in request.prompt_text
    assert "behaviour spec" in request.system_text


def test_spec_reply_covers_every_behavior_spec_field() -> None:
    covered = set(gemini.SpecReply.model_fields)
    # The rating scale is fixed by the caller so that profiles can be mixed.
    assert covered == set(BehaviorSpec.model_fields) - {"rating_scale"}
    assert "additionalProperties" not in keys_everywhere(gemini.rows_schema())


def test_spec_mode_without_thinking_budget_sends_no_thinking_config(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_json(spec_reply())

    write_spec(client, thinking_budget=None)

    assert "thinkingConfig" not in server.requests[0].generation_config


def test_spec_mode_repairs_a_single_dominant_category(
    server: GeminiServer, client: genai.Client
) -> None:
    categories = spec_reply()["categories"]
    categories[0]["weight"] = 970
    for entry in categories[1:]:
        entry["weight"] = 10
    server.reply_json(spec_reply(categories=categories))

    answer = write_spec(client)

    assert max(answer.spec.mix().values()) == pytest.approx(0.8)
    assert len(answer.spec.categories) == 4


def test_spec_mode_wrong_star_share_length_fails_at_once(
    server: GeminiServer, client: genai.Client
) -> None:
    server.set_handler(lambda request: Reply.success(spec_reply(star_shares=[1, 2])))

    message = failure(lambda: write_spec(client))

    assert "'hikers'" in message
    assert MODEL in message
    assert "2 star shares for a scale of 5 values" in message
    assert server.request_count == 1


def test_spec_mode_blocked_prompt_fails_at_once(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_case("blocked-prompt.json")

    message = failure(lambda: write_spec(client))

    assert "blocked" in message
    assert "SAFETY" in message
    assert "'hikers'" in message
    assert server.request_count == 1


def test_spec_mode_empty_after_thinking_is_retried_then_reported(
    server: GeminiServer, client: genai.Client
) -> None:
    for _ in range(3):
        server.reply_case("empty-after-thinking.json")

    message = failure(lambda: write_spec(client))

    assert "MAX_TOKENS" in message
    assert "before any text" in message
    assert "8190 thinking tokens" in message
    assert "after 3 attempts" in message
    assert server.request_count == 3


def test_spec_mode_truncated_answer_is_retried(
    server: GeminiServer, client: genai.Client
) -> None:
    text = json.dumps(spec_reply())
    server.reply_json(text[: len(text) // 2], finish_reason="MAX_TOKENS")
    server.reply_json(spec_reply())
    usage = gemini.Usage()

    answer = write_spec(client, usage=usage)

    assert answer.spec.span_days == 240
    assert server.request_count == 2
    assert usage.calls == 2


def test_spec_mode_invalid_json_is_retried(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_json('{"categories": [ (end of list) ```json```')
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


def test_spec_mode_schema_mismatch_is_retried(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_json({"categories": "everything"})
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


def test_schema_too_complex_fails_at_once(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_case("error-400-schema-too-complex.json")

    message = failure(lambda: write_spec(client))

    assert "400 INVALID_ARGUMENT" in message
    assert "too many states" in message
    assert "after 1 attempt" in message
    assert server.request_count == 1


def test_bad_key_fails_at_once(server: GeminiServer, client: genai.Client) -> None:
    server.reply_error(403, "PERMISSION_DENIED", "Method doesn't allow this key.")

    message = failure(lambda: write_spec(client))

    assert "403 PERMISSION_DENIED" in message
    assert server.request_count == 1


def test_overloaded_then_success(server: GeminiServer, client: genai.Client) -> None:
    server.reply_case("error-503-overloaded.json")
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


def test_bad_gateway_html_then_success(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_case("error-502.html")
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


def test_quota_with_retry_info_waits_then_succeeds(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_case("error-429-retry-info.json")
    server.reply_json(spec_reply())

    # retryDelay is 2s; the cap keeps the test fast but must still be honoured.
    answer = write_spec(client, backoff_s=0.0, max_backoff_s=0.3)

    assert answer.spec.span_days == 240
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.3


def test_server_errors_give_up_after_the_attempts(
    server: GeminiServer, client: genai.Client, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        server.reply_case("error-503-overloaded.json")
    server.reply_json(spec_reply())

    with caplog.at_level("DEBUG"):
        message = failure(lambda: write_spec(client))

    assert "503 UNAVAILABLE" in message
    assert "The model is overloaded" in message
    assert "after 3 attempts" in message
    assert server.request_count == 3
    retries = [r for r in caplog.records if r.name == "pytest_prisyn"]
    assert [r.levelname for r in retries] == ["WARNING", "WARNING"]
    assert "retrying" in retries[0].getMessage()
    assert KEY not in caplog.text


def test_timeout_is_retried(server: GeminiServer) -> None:
    client = gemini.make_client(KEY, timeout_s=0.3, base_url=server.url)
    server.reply(Reply(200, {"candidates": []}, delay=1.5))
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


def test_timeouts_are_reported(server: GeminiServer) -> None:
    client = gemini.make_client(KEY, timeout_s=0.2, base_url=server.url)
    for _ in range(2):
        server.reply(Reply(200, {"candidates": []}, delay=1.0))

    message = failure(lambda: write_spec(client, attempts=2))

    assert "timed out" in message
    assert "after 2 attempts" in message


@pytest.mark.filterwarnings("ignore:SOMETHING_NEW is not a valid FinishReason")
def test_unknown_finish_reason_is_retried(
    server: GeminiServer, client: genai.Client
) -> None:
    server.reply_case("unknown-finish-reason.json")
    server.reply_json(spec_reply())

    assert write_spec(client).spec.span_days == 240
    assert server.request_count == 2


# -- rows mode -----------------------------------------------------------------------


def check_rows(answer: gemini.RowsAnswer, simulator: Simulator) -> None:
    """Assert the answer has exactly the planned rows, valid and sorted."""
    counts = np.bincount(answer.user_id, minlength=simulator.n_users + 1)[1:]
    np.testing.assert_array_equal(counts, simulator.counts)
    pairs = set(zip(answer.user_id.tolist(), answer.item_id.tolist(), strict=True))
    assert len(pairs) == len(answer.user_id)
    assert set(answer.rating.tolist()) <= set(simulator.scale.values())
    assert answer.item_id.min() >= 1
    assert answer.item_id.max() <= simulator.n_items
    assert answer.timestamp_s.min() >= EPOCH_SECONDS
    assert answer.timestamp_s.dtype == np.int64
    order = np.lexsort((answer.item_id, answer.timestamp_s, answer.user_id))
    np.testing.assert_array_equal(order, np.arange(len(order)))


def write_rows(
    client: genai.Client, simulator: Simulator, **options: Any
) -> gemini.RowsAnswer:
    """Run rows mode with fast retries."""
    return gemini.write_rows(
        client,
        MODEL,
        simulator,
        descriptions=DESCRIPTIONS,
        usage=options.pop("usage", gemini.Usage()),
        **{**FAST, **options},
    )


def test_rows_mode_writes_exactly_the_planned_rows(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.set_handler(perfect_model)
    usage = gemini.Usage()

    answer = write_rows(client, simulator, chunk_rows=25, usage=usage)

    check_rows(answer, simulator)
    assert answer.rejected == 0
    assert answer.reasks == 0
    seen: list[int] = []
    for request in server.requests:
        data = task(request)
        users = [user["user_id"] for user in data["users"]]
        rows = sum(user["interactions"] for user in data["users"])
        assert users == list(range(users[0], users[0] + len(users)))
        assert rows <= 25 or len(users) == 1
        assert request.generation_config["maxOutputTokens"] == 64 * rows + 1024
        assert request.api_key == KEY
        assert data["rating_scale"] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert data["time_window"]["start"] == "2024-01-01T00:00:00Z"
        assert len(data["items"]) == simulator.n_items
        assert data["profiles"][0]["description"] == DESCRIPTIONS["tech"]
        seen.extend(users)
    # Chunks go out concurrently: every user is asked once, in any order.
    assert sorted(seen) == list(range(1, simulator.n_users + 1))
    assert usage.calls == server.request_count > 1


def test_rows_mode_sends_a_rows_schema(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    server.set_handler(perfect_model)

    write_rows(client, simulator)

    (request,) = server.requests
    schema = request.generation_config["responseJsonSchema"]
    assert request.generation_config["responseMimeType"] == "application/json"
    assert "rows" in schema["properties"]
    assert "default" not in keys_everywhere(schema)


# Bad rows shaped after tests/data/gemini_cases/rows-out-of-range.json, mapped
# onto our schema: off-scale or non-numeric ratings, impossible or ambiguous
# timestamps, ids that are not users or items.
def bad_rows(user: int) -> list[Any]:
    """Return rows a sloppy model writes, each one invalid for its own reason."""
    ok = "2024-03-01T10:00:00Z"
    return [
        {"user_id": user, "item_id": 1, "rating": 0, "timestamp": ok},
        {"user_id": user, "item_id": 2, "rating": 6.5, "timestamp": ok},
        {"user_id": user, "item_id": 3, "rating": "five", "timestamp": ok},
        {"user_id": user, "item_id": 4, "rating": None, "timestamp": ok},
        {"user_id": user, "item_id": 5, "rating": "4", "timestamp": ok},
        {"user_id": user, "item_id": 6, "rating": 4.3, "timestamp": ok},
        {"user_id": user, "item_id": 7, "rating": 4, "timestamp": "01-02-24 9:05"},
        {"user_id": user, "item_id": 8, "rating": 4, "timestamp": "2024-13-45 25:61"},
        {"user_id": user, "item_id": 9, "rating": 4, "timestamp": "2024-03-02 16:42"},
        {"user_id": user, "item_id": 10, "rating": 4, "timestamp": "2091-01-01T00:00Z"},
        {"user_id": -3, "item_id": 11, "rating": 3, "timestamp": ok},
        {"user_id": user, "item_id": "", "rating": 4, "timestamp": ok},
        {"user_id": user, "item_id": "GEAR_100", "rating": 4, "timestamp": ok},
        {"user_id": user, "item_id": 999, "rating": 4, "timestamp": ok},
        "not a row",
    ]


def test_rows_mode_rejects_bad_rows_and_reasks_for_the_gap(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def first_answer(request: RecordedRequest) -> Reply:
        rows = good_rows(request)
        half = rows[: len(rows) // 2]
        half[0]["rating"] = 4  # an int is a fine rating
        half[1]["timestamp"] = "2024-02-03T21:15:00+02:00"  # so is an offset
        # rows-restarted-duplicates.json: the list starts over from the top.
        restarted = [dict(row, rating=5.0) for row in half[:6]]
        return Reply.success({"rows": half + restarted + bad_rows(1)})

    answer_in_turn(server, first_answer, perfect_model)

    answer = write_rows(client, simulator)

    check_rows(answer, simulator)
    assert answer.rejected == 6 + len(bad_rows(1))
    assert answer.reasks == 1
    assert server.request_count == 2
    first, second = (task(request) for request in server.requests)
    assert sum(user["interactions"] for user in first["users"]) == 60
    assert sum(user["interactions"] for user in second["users"]) == 30
    reasons = " | ".join(entry["reason"] for entry in second["rejected_rows"])
    assert "already has item" in reasons
    assert len(second["rejected_rows"]) == 12
    # Only the pairs of the users asked for again, which the final data keeps.
    reasked = {user["user_id"] for user in second["users"]}
    taken = {tuple(pair) for pair in second["already_taken"]}
    assert {user for user, _ in taken} <= reasked
    final = set(zip(answer.user_id.tolist(), answer.item_id.tolist(), strict=True))
    assert taken == {(user, item) for user, item in final if user in reasked} - {
        (row["user_id"], row["item_id"]) for row in good_rows(server.requests[1])
    }


def test_rows_mode_counts_every_rejection_reason(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    answer_in_turn(
        server, lambda r: Reply.success({"rows": bad_rows(1)}), perfect_model
    )

    answer = write_rows(client, simulator)

    check_rows(answer, simulator)
    assert answer.rejected == len(bad_rows(1))
    reasons = [entry["reason"] for entry in task(server.requests[1])["rejected_rows"]]
    assert len(reasons) == 12  # the feedback is kept short
    joined = " | ".join(reasons)
    for expected in (
        "rating 0 is not one of",
        "rating 6.5",
        "rating 'five'",
        "rating None",
        "rating '4'",
        "rating 4.3",
        "'01-02-24 9:05' is not ISO-8601",
        "'2024-13-45 25:61' is not ISO-8601",
        "'2024-03-02 16:42' has no Z or UTC offset",
        "'2091-01-01T00:00Z' is outside",
        "user_id -3 was not asked for",
        "item_id '' is not in the catalog",
    ):
        assert expected in joined


def test_rows_mode_drops_rows_beyond_the_count(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def generous(request: RecordedRequest) -> Reply:
        rows = good_rows(request)
        user = rows[0]["user_id"]
        extra = {
            "user_id": user,
            "item_id": 40,
            "rating": 3.0,
            "timestamp": "2024-01-05T08:00:00Z",
        }
        used = {row["item_id"] for row in rows if row["user_id"] == user}
        assert 40 not in used
        return Reply.success({"rows": [*rows, extra]})

    server.set_handler(generous)

    answer = write_rows(client, simulator)

    check_rows(answer, simulator)
    assert answer.rejected == 1
    assert answer.reasks == 0


def test_rows_mode_gives_up_after_max_reasks(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    def stubborn(request: RecordedRequest) -> Reply:
        rows = good_rows(request)[:3]
        return Reply.success({"rows": rows + bad_rows(rows[0]["user_id"])})

    server.set_handler(stubborn)

    message = failure(lambda: write_rows(client, simulator, max_reasks=2))

    assert server.request_count == 3
    assert "chunk 1 of 1 (users 1-6)" in message
    assert "wanted 60 rows, kept 9" in message
    assert f"rejected {3 * len(bad_rows(1))}" in message
    assert "2 re-asks" in message
    assert MODEL in message


def cut_short(request: RecordedRequest) -> Reply:
    """The perfect model's answer, cut off two thirds of the way at MAX_TOKENS."""
    text = json.dumps({"rows": good_rows(request)})
    return Reply.success(text[: len(text) * 2 // 3], finish_reason="MAX_TOKENS")


@pytest.mark.parametrize(
    "truncated",
    [cut_short, lambda request: Reply.case("rows-truncated-max-tokens.json")],
    ids=["cut-short", "recorded-case"],
)
def test_rows_mode_truncated_answer_is_asked_again_in_halves(
    server: GeminiServer,
    client: genai.Client,
    simulator: Simulator,
    truncated: Callable[[RecordedRequest], Reply],
) -> None:
    answer_in_turn(server, truncated, perfect_model, perfect_model)
    usage = gemini.Usage()

    answer = write_rows(client, simulator, usage=usage)

    check_rows(answer, simulator)
    assert answer.reasks == 0
    assert answer.rejected == 0
    asked = [[u["user_id"] for u in task(r)["users"]] for r in server.requests]
    assert asked == [[1, 2, 3, 4, 5, 6], [1, 2, 3], [4, 5, 6]]
    assert usage.splits == 1
    assert usage.retries == 0


def test_rows_mode_chunk_failure_names_the_chunk(
    server: GeminiServer, client: genai.Client, simulator: Simulator
) -> None:
    # The first chunk is answered; the second never gets valid JSON back.
    server.set_handler(
        lambda request: (
            perfect_model(request)
            if task(request)["users"][0]["user_id"] == 1
            else Reply.case("rows-field-debris.json")
        )
    )

    message = failure(
        lambda: write_rows(client, simulator, chunk_rows=30, concurrency=1)
    )

    assert "chunk 2 of 3" in message
    assert "not valid JSON" in message
    assert "after 3 attempts" in message
    assert "1 of 3 chunks were written." in message
    # After a failure no new chunk starts: chunk 3 is never asked.
    assert server.request_count == 4


def test_rows_mode_shows_a_deterministic_catalog_subset(
    server: GeminiServer, client: genai.Client
) -> None:
    simulator = Simulator(
        population=[("tech", 0.5), ("foodie", 0.5)],
        specs={"tech": _spec("tech"), "foodie": _spec("foodie")},
        n_users=6,
        n_items=1000,
        n_interactions=60,
        seed=3,
    )
    server.set_handler(perfect_model)

    def items_by_user() -> dict[int, list[dict[str, Any]]]:
        # Chunks go out concurrently, so requests are matched by their user.
        return {
            task(r)["users"][0]["user_id"]: task(r)["items"] for r in server.requests
        }

    check_rows(write_rows(client, simulator, chunk_rows=1), simulator)
    first_run = items_by_user()
    server.reset()
    server.set_handler(perfect_model)
    write_rows(client, simulator, chunk_rows=1)

    assert items_by_user() == first_run
    assert len(first_run) == simulator.n_users
    catalog = simulator.catalog()
    for request in server.requests:
        data = task(request)
        ids = [item["item_id"] for item in data["items"]]
        assert len(ids) == len(set(ids)) == 400
        (profile,) = data["profiles"]
        own = set(_spec(profile["name"]).mix())
        shown = np.mean([item["category"] in own for item in data["items"]])
        in_catalog = np.mean(catalog["category"].astype(str).isin(own))
        assert shown > in_catalog


def test_rows_mode_shows_enough_items_for_a_heavy_user(
    server: GeminiServer, client: genai.Client
) -> None:
    simulator = Simulator(
        population=[("tech", 1.0)],
        specs={"tech": _spec("tech")},
        n_users=2,
        n_items=1000,
        n_interactions=900,
        seed=5,
    )
    assert simulator.counts.max() > 400
    server.set_handler(perfect_model)

    check_rows(write_rows(client, simulator), simulator)

    for request in server.requests:
        data = task(request)
        (user,) = data["users"]
        assert len(data["items"]) >= user["interactions"] + 100
