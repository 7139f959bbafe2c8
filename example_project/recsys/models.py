"""Recommenders sharing one interface: ``fit(train)``, then ``recommend(users, k)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

import numpy as np
import pandas as pd

ALS_BATCH_USERS = 256


class Recommender:
    """Base class: indexes users and items, ranks scores, hides seen items."""

    def fit(self, train: pd.DataFrame) -> Self:
        """Learn from an interactions frame with user_id, item_id and rating."""
        self.item_ids_ = np.sort(train["item_id"].unique())
        self.user_ids_ = np.sort(train["user_id"].unique())
        self._user_row = {int(user): row for row, user in enumerate(self.user_ids_)}
        rows = np.searchsorted(self.user_ids_, train["user_id"].to_numpy())
        columns = np.searchsorted(self.item_ids_, train["item_id"].to_numpy())
        shape = (len(self.user_ids_), len(self.item_ids_))
        self.ratings_ = np.zeros(shape)
        self.ratings_[rows, columns] = train["rating"].to_numpy(dtype=float)
        self.seen_ = np.zeros(shape, dtype=bool)
        self.seen_[rows, columns] = True
        self.popularity_ = self.seen_.sum(axis=0).astype(float)
        self._learn()
        return self

    def recommend(
        self, user_ids: Iterable[int], k: int = 10, exclude_seen: bool = True
    ) -> dict[int, list[int]]:
        """Each user's top-k item ids, best first; unknown users get popular items."""
        if not hasattr(self, "item_ids_"):
            raise RuntimeError(f"{type(self).__name__} must be fit before recommend")
        users = [int(user) for user in user_ids]
        rows = np.array([self._user_row.get(user, -1) for user in users], dtype=int)
        known = rows >= 0
        scores = np.tile(self.popularity_, (len(users), 1))
        if known.any():
            scores[known] = self._scores(rows[known])
            if exclude_seen:
                scores[known] = np.where(
                    self.seen_[rows[known]], -np.inf, scores[known]
                )
        # Best score first; equal scores go to the more popular item, then lower id.
        ties = np.broadcast_to(-self.popularity_, scores.shape)
        order = np.lexsort((ties, -scores), axis=1)[:, :k]
        return {
            user: [
                int(self.item_ids_[column])
                for column in ranked
                if np.isfinite(scores[position, column])
            ]
            for position, (user, ranked) in enumerate(zip(users, order, strict=True))
        }

    def _learn(self) -> None:
        """Fit model-specific state from ``ratings_`` and ``seen_``."""

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of every item for the users at these matrix rows."""
        raise NotImplementedError


class Popularity(Recommender):
    """Recommends the items with the most training interactions."""

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_, (len(rows), 1))


class RandomRecommender(Recommender):
    """Recommends unseen items in an order fixed by (seed, user)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        users = self.user_ids_[rows]
        generators = [np.random.default_rng([self.seed, int(user)]) for user in users]
        return np.array([rng.random(len(self.item_ids_)) for rng in generators])


class ItemKNN(Recommender):
    """Item-item cosine similarity; an item's score sums its similarity to history.

    ``asymmetry`` 0.5 is plain cosine; higher values divide less by the candidate's
    own popularity (asymmetric cosine, Aiolli 2013), so popular candidates rank
    higher. ``neighbours`` keeps each candidate's most similar items only.
    """

    def __init__(
        self,
        neighbours: int | None = 50,
        rating_weighted: bool = False,
        asymmetry: float = 0.5,
    ) -> None:
        self.neighbours = neighbours
        self.rating_weighted = rating_weighted
        self.asymmetry = asymmetry

    def _learn(self) -> None:
        binary = self.seen_.astype(float)
        counts = np.maximum(binary.sum(axis=0), 1.0)
        similarity = (binary.T @ binary) / np.outer(
            counts**self.asymmetry, counts ** (1.0 - self.asymmetry)
        )
        np.fill_diagonal(similarity, 0.0)
        if self.neighbours is not None and self.neighbours < len(similarity):
            # Keep, for each candidate item (column), only its closest neighbours.
            weakest = np.argsort(similarity, axis=0)[: -self.neighbours]
            np.put_along_axis(similarity, weakest, 0.0, axis=0)
        self.similarity_ = similarity

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        history = self.ratings_[rows] if self.rating_weighted else self.seen_[rows]
        return history.astype(float) @ self.similarity_


class MatrixFactorization(Recommender):
    """Implicit-feedback matrix factorisation trained by alternating least squares."""

    def __init__(
        self,
        factors: int = 16,
        epochs: int = 8,
        regularization: float = 5.0,
        alpha: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.regularization = regularization
        self.alpha = alpha
        self.seed = seed

    def _learn(self) -> None:
        rng = np.random.default_rng(self.seed)
        preference = self.seen_.astype(float)
        n_users, n_items = preference.shape
        self.user_factors_ = rng.normal(0.0, 0.1, (n_users, self.factors))
        self.item_factors_ = rng.normal(0.0, 0.1, (n_items, self.factors))
        for _ in range(self.epochs):
            self.user_factors_ = self._solve(preference, self.item_factors_)
            self.item_factors_ = self._solve(preference.T, self.user_factors_)

    def _solve(self, preference: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """One ALS half-step: the best rows for `preference` given `fixed` factors."""
        gram = fixed.T @ fixed + self.regularization * np.eye(self.factors)
        solved = np.empty((len(preference), self.factors))
        for start in range(0, len(preference), ALS_BATCH_USERS):
            batch = preference[start : start + ALS_BATCH_USERS]
            # Confidence is 1 + alpha on observed cells, 1 elsewhere (Hu et al. 2008).
            weighted = fixed.T[None, :, :] * (self.alpha * batch)[:, None, :]
            lhs = gram + weighted @ fixed
            rhs = ((1.0 + self.alpha) * batch) @ fixed
            solution = np.linalg.solve(lhs, rhs[..., None])
            solved[start : start + len(batch)] = solution[..., 0]
        return solved

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[rows] @ self.item_factors_.T


def default_models(seed: int = 0) -> dict[str, Recommender]:
    """Fresh instances of every model, with settings tuned for small catalogs."""
    return {
        "random": RandomRecommender(seed=seed),
        "popularity": Popularity(),
        "itemknn": ItemKNN(neighbours=50, rating_weighted=True, asymmetry=0.8),
        "mf": MatrixFactorization(factors=16, alpha=2.0, seed=seed),
    }
