"""What a run did with datasets, mergeable across pytest-xdist workers."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

FROM_CACHE = "cache"
FROM_DATA = "data"  # the committed data directory (--prisyn-data-dir)
REPLAYED = (FROM_CACHE, FROM_DATA)


@dataclass
class Stats:
    """Per dataset fingerprint: replayed (cache or committed data) or generated.

    Asking again for a dataset already served in this run counts nothing.
    """

    served: dict[str, str] = field(default_factory=dict)
    gemini_calls: int = 0
    gemini_retries: int = 0
    gemini_tokens: int = 0
    gemini_rows_reused: int = 0  # rows-mode rows read from the rows cache
    gemini_cost: float | None = 0.0  # None once any call had no known price
    saved_tokens: int = 0
    saved_cost: float | None = 0.0
    damaged: int = 0
    unsaved: int = 0
    unsaved_reason: str | None = None
    failed: set[str] = field(default_factory=set)  # fingerprints
    ignored_data: list[str] = field(default_factory=list)  # damaged committed data
    quarantined: str | None = None  # where a damaged cache index was moved
    stale: dict[str, str] = field(default_factory=dict)  # fingerprint -> label
    seconds_generating: float = 0.0

    @property
    def used(self) -> bool:
        """Whether any dataset was asked for (served, or failed to be made)."""
        return bool(
            self.served
            or self.failed
            or self.gemini_calls
            or self.ignored_data
            or self.quarantined
        )

    @property
    def from_cache(self) -> int:
        """How many distinct datasets came from the cache."""
        return sum(source == FROM_CACHE for source in self.served.values())

    @property
    def from_data(self) -> int:
        """How many distinct datasets came from the committed data directory."""
        return sum(source == FROM_DATA for source in self.served.values())

    @property
    def generated(self) -> Counter[str]:
        """How many distinct datasets each backend generated."""
        return Counter(s for s in self.served.values() if s not in REPLAYED)

    def add_cost(self, cost: float | None) -> None:
        """Add a Gemini cost; an unknown one makes the total unknown."""
        self.gemini_cost = _add(self.gemini_cost, cost)

    def add_saved(self, usage: dict[str, Any]) -> None:
        """Count what a dataset served from the cache had cost to make."""
        tokens = sum(
            int(usage.get(name) or 0)
            for name in ("prompt_tokens", "output_tokens", "thinking_tokens")
        )
        self.saved_tokens += tokens
        if tokens:
            self.saved_cost = _add(self.saved_cost, usage.get("cost_usd"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for xdist's worker output."""
        data = asdict(self)
        data["failed"] = sorted(self.failed)
        return data

    def merge(self, other: dict[str, Any]) -> None:
        """Add a worker's stats; a dataset generated anywhere counts as generated."""
        for fingerprint, source in other.get("served", {}).items():
            if self.served.get(fingerprint, FROM_CACHE) in REPLAYED:
                self.served[fingerprint] = source
        self.gemini_calls += int(other.get("gemini_calls", 0))
        self.gemini_retries += int(other.get("gemini_retries", 0))
        self.gemini_tokens += int(other.get("gemini_tokens", 0))
        self.gemini_rows_reused += int(other.get("gemini_rows_reused", 0))
        self.saved_tokens += int(other.get("saved_tokens", 0))
        self.gemini_cost = _add(self.gemini_cost, other.get("gemini_cost", 0.0))
        self.saved_cost = _add(self.saved_cost, other.get("saved_cost", 0.0))
        self.damaged += int(other.get("damaged", 0))
        self.unsaved += int(other.get("unsaved", 0))
        self.unsaved_reason = self.unsaved_reason or other.get("unsaved_reason")
        self.failed.update(other.get("failed", []))
        self.ignored_data = self.ignored_data or list(other.get("ignored_data", []))
        self.quarantined = self.quarantined or other.get("quarantined")
        self.stale.update(other.get("stale", {}))
        self.seconds_generating += float(other.get("seconds_generating", 0.0))


def _add(total: float | None, more: object) -> float | None:
    if total is None or not isinstance(more, int | float):
        return None
    return total + float(more)
