"""Offline evaluation: a leave-last-out split and top-k ranking metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from recsys.models import Recommender


def leave_last_out(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's latest interaction; one-interaction users stay in train."""
    # Same-second interactions are common, so item_id breaks ties for a stable split.
    ordered = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    last = ~ordered["user_id"].duplicated(keep="last")
    alone = ordered.groupby("user_id")["user_id"].transform("size") == 1
    held_out = last & ~alone
    train = ordered[~held_out].reset_index(drop=True)
    test = ordered[held_out].reset_index(drop=True)
    return train, test


def _relevant(test: pd.DataFrame) -> dict[int, set[int]]:
    """Held-out item ids per user."""
    return {
        int(user): {int(item) for item in items}
        for user, items in test.groupby("user_id")["item_id"]
    }


def hit_rate_at_k(
    recommendations: Mapping[int, Sequence[int]], test: pd.DataFrame, k: int = 10
) -> float:
    """Share of test users with at least one held-out item in their top k."""
    relevant = _relevant(test)
    hits = [
        bool(items & set(recommendations.get(user, [])[:k]))
        for user, items in relevant.items()
    ]
    return float(np.mean(hits)) if hits else 0.0


def ndcg_at_k(
    recommendations: Mapping[int, Sequence[int]], test: pd.DataFrame, k: int = 10
) -> float:
    """Mean normalised discounted cumulative gain of the top k over test users."""
    relevant = _relevant(test)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    gains = []
    for user, items in relevant.items():
        ranked = recommendations.get(user, [])[:k]
        dcg = sum(discounts[rank] for rank, item in enumerate(ranked) if item in items)
        ideal = discounts[: min(len(items), k)].sum()
        gains.append(dcg / ideal)
    return float(np.mean(gains)) if gains else 0.0


def evaluate(
    model: Recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10
) -> dict[str, float]:
    """Fit `model` on `train`, recommend for the test users, score the top k."""
    model.fit(train)
    users = sorted(int(user) for user in test["user_id"].unique())
    recommendations = model.recommend(users, k=k, exclude_seen=True)
    return {
        "hit_rate": hit_rate_at_k(recommendations, test, k),
        "ndcg": ndcg_at_k(recommendations, test, k),
        "users": float(len(users)),
    }
