"""A small recommender package: baseline and personalised models, offline metrics."""

from recsys.evaluation import evaluate, hit_rate_at_k, leave_last_out, ndcg_at_k
from recsys.models import (
    ItemKNN,
    MatrixFactorization,
    Popularity,
    RandomRecommender,
    Recommender,
    default_models,
)

__all__ = [
    "ItemKNN",
    "MatrixFactorization",
    "Popularity",
    "RandomRecommender",
    "Recommender",
    "default_models",
    "evaluate",
    "hit_rate_at_k",
    "leave_last_out",
    "ndcg_at_k",
]
