"""Offline ranking quality: personalised models must clearly beat the baselines.

Each population is generated once per module, split leave-last-out, and every
model is scored on the held-out interactions. The required gaps are about half
the smallest mean gap measured over seeds 0-9 at these sizes (see README.md).
"""

import pandas as pd
import pytest
from pytest_prisyn.engine import Engine

from recsys import default_models, evaluate, leave_last_out

SIZES = {"n_users": 300, "n_items": 400, "n_interactions": 12_000, "seed": 7}
POPULATIONS = [
    pytest.param("tech", id="tech"),
    pytest.param("foodie", id="foodie"),
    pytest.param("cinephile", id="cinephile"),
    pytest.param("movielens", id="movielens"),
    pytest.param({"tech": 0.5, "gamer": 0.3, "fitness": 0.2}, id="tech+gamer+fitness"),
]
METRICS = ["hit_rate", "ndcg"]
OVER_POPULARITY = {"hit_rate": 0.06, "ndcg": 0.035}
OVER_RANDOM = {"hit_rate": 0.04, "ndcg": 0.02}

Split = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module", params=POPULATIONS)
def split(request: pytest.FixtureRequest, prisyn: Engine) -> Split:
    """One dataset per population, generated once and split leave-last-out."""
    return leave_last_out(prisyn.dataset(request.param, **SIZES))


@pytest.fixture(scope="module")
def scores(split: Split) -> dict[str, dict[str, float]]:
    """HR@10 and NDCG@10 of every model on the held-out interactions."""
    train, test = split
    return {
        name: evaluate(model, train, test, k=10)
        for name, model in default_models().items()
    }


def test_every_user_is_evaluated(
    split: Split, scores: dict[str, dict[str, float]]
) -> None:
    _, test = split
    assert test["user_id"].nunique() == SIZES["n_users"]
    assert all(result["users"] == SIZES["n_users"] for result in scores.values())


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("name", ["itemknn", "mf"])
def test_personalised_models_beat_popularity(
    scores: dict[str, dict[str, float]], name: str, metric: str
) -> None:
    margin = OVER_POPULARITY[metric]
    assert scores[name][metric] >= scores["popularity"][metric] + margin, scores


@pytest.mark.parametrize("metric", METRICS)
def test_popularity_beats_random(
    scores: dict[str, dict[str, float]], metric: str
) -> None:
    margin = OVER_RANDOM[metric]
    assert scores["popularity"][metric] >= scores["random"][metric] + margin, scores
