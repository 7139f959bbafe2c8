"""Shared fixtures for the recsys test suite."""

import pytest

from recsys import Recommender, default_models

MODEL_NAMES = list(default_models())


@pytest.fixture(params=MODEL_NAMES)
def model(request: pytest.FixtureRequest) -> Recommender:
    """A fresh, unfitted instance of each model in turn."""
    return default_models()[request.param]
