"""Shared test set-up: every test starts from a clean prisyn environment."""

from __future__ import annotations

import pytest

CLEARED_VARIABLES = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "PRISYN_BACKEND",
    "PRISYN_MODEL",
    "PRISYN_CACHE_DIR",
    "GOOGLE_GEMINI_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_prisyn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop keys and prisyn settings the outer environment may carry."""
    for name in CLEARED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
