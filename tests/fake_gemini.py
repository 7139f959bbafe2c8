"""A fake Gemini model for the loopback server: valid answers to our prompts.

`fake_model` answers whatever pytest-prisyn asks: a behaviour spec for a spec
prompt, exact rows for a rows prompt (whose text is one JSON object).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from gemini_server import GeminiServer, RecordedRequest, Reply


@contextmanager
def serving_fake_model(
    monkeypatch: pytest.MonkeyPatch, key: str, *, latency: float = 0.0
) -> Iterator[GeminiServer]:
    """A loopback server answering as `fake_model`, and the environment that
    points the real google-genai client at it with `key`."""
    with GeminiServer(latency=latency) as server:
        monkeypatch.setenv("GEMINI_API_KEY", key)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)
        server.set_handler(fake_model)
        yield server


def fake_model(request: RecordedRequest) -> Reply:
    """Answer a spec prompt with `spec_reply()` and a rows prompt with good rows."""
    try:
        json.loads(request.prompt_text)
    except ValueError:
        return Reply.success(spec_reply())
    return perfect_model(request)


def spec_reply(**overrides: Any) -> dict[str, Any]:
    """Return a valid SpecReply answer, with some fields replaced."""
    answer: dict[str, Any] = {
        "categories": [
            {
                "category": "Hiking Boots",
                "weight": 30,
                "example_items": [f"Ridge Runner Boot {i}" for i in range(25)],
            },
            {
                "category": "tents",
                "weight": 25,
                "example_items": ["Alpine Dome 2", "Alpine Dome 2", " Summit  Tarp "],
            },
            {
                "category": "trail-guides",
                "weight": 20,
                "example_items": ["Best Hikes of the Alps", "Cascades on Foot"],
            },
            {"category": "outdoor", "weight": 25, "example_items": ["Trail Mug"]},
        ],
        "star_shares": [0.08, 0.1, 0.2, 0.32, 0.3],
        "favourite_share": 0.45,
        "min_interactions": 4,
        "activity_sigma": 1.2,
        "popularity_sigma": 1.3,
        "quality_popularity_corr": 0.4,
        "taste_weight": 0.6,
        "user_bias_sd": 0.5,
        "session_size": 5,
        "session_gap_seconds": 200,
        "same_second_share": 0.2,
        "span_days": 240,
    }
    answer.update(overrides)
    return answer


def task(request: RecordedRequest) -> dict[str, Any]:
    """Return the JSON request a rows prompt carries."""
    data: dict[str, Any] = json.loads(request.prompt_text)
    return data


def good_rows(request: RecordedRequest) -> list[dict[str, Any]]:
    """Answer a rows prompt the way a perfect model would."""
    data = task(request)
    taken = {tuple(pair) for pair in data.get("already_taken", [])}
    scale = data["rating_scale"]
    items = [item["item_id"] for item in data["items"]]
    rows = []
    for user in data["users"]:
        uid = user["user_id"]
        free = [i for i in items if (uid, i) not in taken]
        for k in range(user["interactions"]):
            day = (uid * 7 + k) % 90
            rows.append(
                {
                    "user_id": uid,
                    "item_id": free[(uid * 3 + k) % len(free)],
                    "rating": scale[(uid + k) % len(scale)],
                    "timestamp": f"2024-{1 + day // 30:02d}-{1 + day % 28:02d}"
                    f"T19:{k % 60:02d}:07Z",
                }
            )
    return rows


def perfect_model(request: RecordedRequest) -> Reply:
    """Reply to any rows prompt with valid rows."""
    return Reply.success({"rows": good_rows(request)})
