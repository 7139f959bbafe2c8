"""Learnable signal: does a dataset reward personalisation the way real logs do?

With a leave-last-out split (each user's most recent interaction held out), a
simple personalised model should beat popularity, and popularity should beat
random, on hit rate and NDCG at k. Data that fails this would let a broken
recommender pass its tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Score:
    """Hit rate and NDCG at k of one model."""

    hit_rate: float
    ndcg: float


@dataclass(frozen=True)
class SignalReport:
    """Scores of random, popularity and item-kNN on a leave-last-out split."""

    k: int
    users: int
    random: Score
    popularity: Score
    item_knn: Score


def leave_last_out(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off each user's latest interaction; users with one stay in train."""
    ordered = frame.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    last = ~ordered["user_id"].duplicated(keep="last")
    alone = ordered.groupby("user_id")["user_id"].transform("size") == 1
    test = ordered[last & ~alone]
    return ordered.drop(test.index), test


def learnable_signal(
    frame: pd.DataFrame, *, k: int = 10, seed: int = 0
) -> SignalReport:
    """Score random, popularity and item-kNN recommenders at `k`."""
    train, test = leave_last_out(frame)
    items = np.sort(frame["item_id"].unique())
    users = np.sort(train["user_id"].unique())
    rows = np.searchsorted(users, train["user_id"].to_numpy())
    cols = np.searchsorted(items, train["item_id"].to_numpy())
    seen = np.zeros((len(users), len(items)), dtype=np.float32)
    seen[rows, cols] = 1.0

    test_rows = np.searchsorted(users, test["user_id"].to_numpy())
    target = np.searchsorted(items, test["item_id"].to_numpy())
    history = seen[test_rows]

    rng = np.random.default_rng(seed)
    random_scores = rng.random(history.shape)
    popularity = np.broadcast_to(seen.sum(axis=0), history.shape)
    return SignalReport(
        k=k,
        users=len(test_rows),
        random=_score(random_scores, history, target, k),
        popularity=_score(popularity, history, target, k),
        item_knn=_score(_item_knn_scores(seen, history), history, target, k),
    )


def _item_knn_scores(seen: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Sum of cosine similarities between each candidate and the user's items."""
    norms = np.sqrt(seen.sum(axis=0))
    norms[norms == 0] = 1.0
    similarity = (seen.T @ seen) / np.outer(norms, norms)
    np.fill_diagonal(similarity, 0.0)
    return history @ similarity


def _score(
    scores: np.ndarray, history: np.ndarray, target: np.ndarray, k: int
) -> Score:
    masked = np.where(history > 0, -np.inf, scores)
    top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    ranked = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1), axis=1
    )
    hit_at = ranked == target[:, None]
    hits = hit_at.any(axis=1)
    rank = hit_at.argmax(axis=1)
    gains = np.where(hits, 1.0 / np.log2(rank + 2.0), 0.0)
    return Score(hit_rate=float(hits.mean()), ndcg=float(gains.mean()))
