"""pytest-prisyn: privacy-safe synthetic interaction data for recommender tests."""

from __future__ import annotations

__version__ = "0.1.0"
