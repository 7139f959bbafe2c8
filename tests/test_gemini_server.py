"""The loopback Gemini server works with the real google-genai SDK."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gemini_server import CASE_STATUS, CASES_DIR, GeminiServer, RecordedRequest, Reply
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

MODEL = "gemini-2.5-flash"
KEY = "test-key-123"


class Event(BaseModel):
    """A small structured-output schema."""

    user_id: int
    item_id: str
    rating: float


class Events(BaseModel):
    """The top-level answer."""

    events: list[Event]


ANSWER = {"events": [{"user_id": 1, "item_id": "GEAR_100", "rating": 4.5}]}
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}


@pytest.fixture(autouse=True)
def _loopback_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK's httpx off proxies and away from env overrides."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)


@pytest.fixture
def server() -> Iterator[GeminiServer]:
    """Run a GeminiServer for one test."""
    with GeminiServer() as srv:
        yield srv


def make_client(
    server: GeminiServer, *, timeout: int = 10_000, **options: Any
) -> genai.Client:
    """Return a client that only talks to the loopback server."""
    http_options = types.HttpOptions(base_url=server.url, timeout=timeout, **options)
    return genai.Client(api_key=KEY, http_options=http_options)


@pytest.fixture
def client(server: GeminiServer) -> Iterator[genai.Client]:
    """Return a client bound to the test's server."""
    with make_client(server) as c:
        yield c


def json_config(**extra: Any) -> types.GenerateContentConfig:
    """Return a structured-output config using the Events schema."""
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema=Events.model_json_schema(),
        **extra,
    )


def test_sync_structured_output(server: GeminiServer, client: genai.Client) -> None:
    server.reply_json(ANSWER)
    config = json_config(
        system_instruction="You write rows.",
        max_output_tokens=256,
        temperature=0.0,
        seed=7,
        thinking_config=types.ThinkingConfig(thinking_budget=0),
    )
    response = client.models.generate_content(
        model=MODEL, contents="Give me one event.", config=config
    )
    assert Events.model_validate_json(response.text or "") == Events.model_validate(
        ANSWER
    )
    assert response.model_version == "gemini-2.5-flash-001"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP

    [req] = server.requests
    assert req.method == "POST"
    assert req.path == f"/v1/models/{MODEL}:generateContent"
    assert (req.api_version, req.model, req.action) == ("v1", MODEL, "generateContent")
    assert req.api_key == KEY
    assert req.headers["x-goog-api-key"] == KEY
    assert req.prompt_text == "Give me one event."
    assert req.system_text == "You write rows."
    cfg = req.generation_config
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseJsonSchema"] == Events.model_json_schema()
    assert (cfg["maxOutputTokens"], cfg["temperature"], cfg["seed"]) == (256, 0.0, 7)
    # Nested keys are not camelCased by SDK 3.6.1.
    assert cfg["thinkingConfig"] == {"thinking_budget": 0}
    assert req.received_at <= time.time()


def test_async_structured_output(server: GeminiServer) -> None:
    server.reply_json(ANSWER)

    async def call(c: genai.Client) -> types.GenerateContentResponse:
        async with c.aio as aclient:
            return await aclient.models.generate_content(
                model=MODEL, contents="Give me one event.", config=json_config()
            )

    with make_client(server) as c:
        response = asyncio.run(call(c))
    assert json.loads(response.text or "") == ANSWER
    assert server.request_count == 1
    assert server.requests[0].api_key == KEY
    assert server.requests[0].path == f"/v1/models/{MODEL}:generateContent"


def test_v1beta_path(server: GeminiServer) -> None:
    server.reply_json("plain text")
    with make_client(server, api_version="v1beta") as c:
        response = c.models.generate_content(model=MODEL, contents="hi")
    assert response.text == "plain text"
    assert server.requests[0].path == f"/v1beta/models/{MODEL}:generateContent"
    assert server.requests[0].api_version == "v1beta"


def test_base_url_from_env(
    server: GeminiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    server.reply_json(ANSWER)
    with genai.Client(api_key=KEY, http_options=types.HttpOptions(timeout=10_000)) as c:
        response = c.models.generate_content(model=MODEL, contents="hi")
    assert json.loads(response.text or "") == ANSWER
    assert server.requests[0].model == MODEL


def test_429_case_with_retry_info(server: GeminiServer, client: genai.Client) -> None:
    server.reply_case("error-429-retry-info.json")
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="hi", config=json_config())
    err = info.value
    assert (err.code, err.status) == (429, "RESOURCE_EXHAUSTED")
    # APIError.details is the whole error body, not error.details.
    details = err.details["error"]["details"]
    retry = [d for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": RETRY_INFO["@type"], "retryDelay": "2s"}]
    assert server.request_count == 1  # no retry unless HttpRetryOptions is given


def test_reply_error_with_details(server: GeminiServer, client: genai.Client) -> None:
    server.reply_error(429, "RESOURCE_EXHAUSTED", "slow down", details=[RETRY_INFO])
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 429
    assert info.value.message == "slow down"
    assert info.value.details["error"]["details"] == [RETRY_INFO]


def test_503_is_server_error(server: GeminiServer, client: genai.Client) -> None:
    server.reply_case("error-503-overloaded")
    with pytest.raises(errors.ServerError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")


def test_html_502_is_server_error(server: GeminiServer, client: genai.Client) -> None:
    server.reply_case("error-502.html")
    with pytest.raises(errors.ServerError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert info.value.code == 502
    assert "502 Bad Gateway" in (info.value.message or "")


def test_no_scripted_reply_fails_loudly(
    server: GeminiServer, client: genai.Client
) -> None:
    with pytest.raises(errors.ServerError, match="no scripted reply"):
        client.models.generate_content(model=MODEL, contents="hi")


def test_streaming_yields_sse_chunks(
    server: GeminiServer, client: genai.Client
) -> None:
    text = json.dumps(ANSWER)
    server.reply_json(ANSWER)
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL, contents="stream it", config=json_config()
        )
    )
    assert len(chunks) == 3
    assert "".join(c.text or "" for c in chunks) == text
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == len(text) // 4 + 1
    req = server.requests[0]
    assert req.stream
    assert req.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert req.query == "alt=sse"


def test_async_streaming(server: GeminiServer) -> None:
    server.reply_json("abcdefghij")

    async def call(c: genai.Client) -> list[str]:
        async with c.aio as aclient:
            stream = await aclient.models.generate_content_stream(
                model=MODEL, contents="hi"
            )
            return [chunk.text or "" async for chunk in stream]

    with make_client(server) as c:
        assert asyncio.run(call(c)) == ["abcd", "efgh", "ij"]


def test_streaming_error(server: GeminiServer, client: genai.Client) -> None:
    server.reply_case("error-429-no-details")
    with pytest.raises(errors.ClientError) as info:
        list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    assert info.value.code == 429


def test_usage_given(server: GeminiServer, client: genai.Client) -> None:
    server.reply_json(
        ANSWER,
        usage={"prompt_token_count": 100, "candidatesTokenCount": 20},
        finish_reason="MAX_TOKENS",
        model_version="gemini-test",
    )
    response = client.models.generate_content(model=MODEL, contents="hi")
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (100, 20)
    assert usage.total_token_count == 120
    assert response.model_version == "gemini-test"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_usage_computed(server: GeminiServer, client: genai.Client) -> None:
    prompt = "x" * 400
    server.reply_json("y" * 80)
    response = client.models.generate_content(model=MODEL, contents=prompt)
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (100, 21)
    assert usage.total_token_count == 121
    assert usage.thoughts_token_count is None


def test_handler_and_queue(server: GeminiServer, client: genai.Client) -> None:
    def echo(request: RecordedRequest) -> Reply:
        return Reply.success({"echo": request.prompt_text})

    server.set_handler(echo)
    server.reply_json("queued first")
    texts = [
        client.models.generate_content(model=MODEL, contents=p).text
        for p in ("one", "two")
    ]
    assert texts == ["queued first", '{"echo": "two"}']
    assert server.pending == 0


def test_handler_exception_is_500(server: GeminiServer, client: genai.Client) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise ValueError("boom")

    server.set_handler(broken)
    with pytest.raises(errors.ServerError, match="boom"):
        client.models.generate_content(model=MODEL, contents="hi")


def test_timeout_raises_transport_error(server: GeminiServer) -> None:
    server.reply_raw(200, json.dumps({"candidates": []}), delay=5.0)
    started = time.monotonic()
    with (
        make_client(server, timeout=300) as c,
        pytest.raises(Exception, match="timed out") as info,
    ):
        c.models.generate_content(model=MODEL, contents="hi")
    assert time.monotonic() - started < 3
    # Not a google.genai error: the SDK lets httpx(2)'s ReadTimeout through.
    assert not isinstance(info.value, errors.APIError)
    assert type(info.value).__name__ == "ReadTimeout"
    assert server.requests[0].headers["x-server-timeout"] == "1"


def test_sdk_retries_only_with_retry_options(server: GeminiServer) -> None:
    server.reply_case("error-503-overloaded")
    server.reply_case("error-429-retry-info")
    server.reply_json(ANSWER)
    retry = types.HttpRetryOptions(attempts=3, initial_delay=0.01, jitter=0.0)
    started = time.monotonic()
    with make_client(server, retry_options=retry) as c:
        response = c.models.generate_content(model=MODEL, contents="hi")
    assert json.loads(response.text or "") == ANSWER
    assert server.request_count == 3
    # The SDK's backoff ignores RetryInfo's retryDelay ("2s").
    assert time.monotonic() - started < 1.5


def test_latency_is_concurrent() -> None:
    with GeminiServer(latency=0.3) as srv, make_client(srv) as c:
        srv.set_handler(lambda request: Reply.success(request.prompt_text))
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=5) as pool:
            texts = list(
                pool.map(
                    lambda p: c.models.generate_content(model=MODEL, contents=p).text,
                    ["a", "b", "c", "d", "e"],
                )
            )
        elapsed = time.monotonic() - started
    assert texts == ["a", "b", "c", "d", "e"]
    assert srv.request_count == 5
    assert 0.3 <= elapsed < 1.2


def test_unknown_route_is_404(server: GeminiServer, client: genai.Client) -> None:
    server.reply_json("unused")
    with pytest.raises(errors.ClientError) as info:
        client.models.get(model=MODEL)
    assert info.value.code == 404
    assert server.requests[0].method == "GET"
    assert server.pending == 1


def _readme_statuses() -> dict[str, int]:
    """Return the file → status table of the cases README."""
    readme = (CASES_DIR / "README.md").read_text()
    return {
        m[1]: int(m[2])
        for m in re.finditer(r"^\| (\S+\.(?:json|html)) \| (\d{3}) \|", readme, re.M)
    }


CASE_FILES = sorted(p.name for p in CASES_DIR.iterdir() if p.name != "README.md")


def test_case_status_table_matches_readme() -> None:
    readme = _readme_statuses()
    assert sorted(readme) == CASE_FILES
    for name, status in readme.items():
        expected = CASE_STATUS.get(name, 502 if name.endswith(".html") else 200)
        assert status == expected, name


@pytest.mark.filterwarnings("ignore:SOMETHING_NEW is not a valid FinishReason")
@pytest.mark.parametrize("name", CASE_FILES)
def test_every_case_replays(
    name: str, server: GeminiServer, client: genai.Client
) -> None:
    status = _readme_statuses()[name]
    server.reply_case(name)
    if status == 200:
        response = client.models.generate_content(model=MODEL, contents="hi")
        assert response.response_id == "case"
    else:
        with pytest.raises(errors.APIError) as info:
            client.models.generate_content(model=MODEL, contents="hi")
        assert info.value.code == status


def test_case_files_are_unchanged_copies() -> None:
    assert (CASES_DIR / "error-502.html").read_bytes().startswith(b"<html>")
    for name in CASE_FILES:
        if name.endswith(".json"):
            json.loads((CASES_DIR / name).read_text())


def test_clean_shutdown_leaks_no_threads() -> None:
    before = set(threading.enumerate())
    srv = GeminiServer()
    with srv, make_client(srv, timeout=200) as c:
        srv.reply_raw(200, "{}", delay=30.0)
        with pytest.raises(Exception, match="timed out"):
            c.models.generate_content(model=MODEL, contents="hi")
        started = time.monotonic()
    assert time.monotonic() - started < 2
    # Threads of servers from earlier tests may still be winding down (their
    # clients' retries can reach them late); give those a moment, not ours.
    deadline = time.monotonic() + 5
    while not set(threading.enumerate()) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(threading.enumerate()) <= before
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_reset(server: GeminiServer, client: genai.Client) -> None:
    server.reply_json("a")
    client.models.generate_content(model=MODEL, contents="hi")
    server.reply_json("b")
    server.reset()
    assert (server.request_count, server.pending) == (0, 0)
