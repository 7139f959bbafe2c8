"""The recommend() contract every model keeps, on a small tech population."""

import pandas as pd
import pytest

from recsys import Popularity, Recommender

pytestmark = pytest.mark.prisyn(
    profile="tech", n_users=200, n_items=300, n_interactions=5000, seed=7
)


def most_popular(frame: pd.DataFrame, k: int) -> list[int]:
    """Item ids by interaction count, ties to the lower id."""
    counts = frame.groupby("item_id").size().sort_index()
    return counts.sort_values(ascending=False, kind="stable").index[:k].tolist()


def test_top_k_lists_hold_k_distinct_unseen_items(
    prisyn_dataset: pd.DataFrame, model: Recommender
) -> None:
    users = prisyn_dataset["user_id"].unique().tolist()
    recommendations = model.fit(prisyn_dataset).recommend(users, k=10)

    seen = prisyn_dataset.groupby("user_id")["item_id"].agg(set)
    known_items = set(prisyn_dataset["item_id"])
    assert sorted(recommendations) == sorted(users)
    for user, items in recommendations.items():
        assert len(items) == 10
        assert len(set(items)) == 10
        assert not set(items) & seen[user], f"user {user} got items they have seen"
        assert set(items) <= known_items


def test_seen_items_may_return_when_not_excluded(prisyn_dataset: pd.DataFrame) -> None:
    model = Popularity().fit(prisyn_dataset)
    users = prisyn_dataset["user_id"].unique().tolist()

    recommendations = model.recommend(users, k=5, exclude_seen=False)

    assert all(
        items == most_popular(prisyn_dataset, 5) for items in recommendations.values()
    )
    seen = prisyn_dataset.groupby("user_id")["item_id"].agg(set)
    assert any(set(items) & seen[user] for user, items in recommendations.items())


def test_unknown_users_get_the_most_popular_items(
    prisyn_dataset: pd.DataFrame, model: Recommender
) -> None:
    stranger = int(prisyn_dataset["user_id"].max()) + 1

    recommendations = model.fit(prisyn_dataset).recommend([stranger], k=5)

    assert recommendations == {stranger: most_popular(prisyn_dataset, 5)}


def test_recommending_before_fit_is_an_error(model: Recommender) -> None:
    with pytest.raises(RuntimeError, match="must be fit"):
        model.recommend([1])


def test_fitting_twice_gives_the_same_recommendations(
    prisyn_dataset: pd.DataFrame, model: Recommender
) -> None:
    users = list(range(1, 51))
    first = model.fit(prisyn_dataset).recommend(users)
    second = model.fit(prisyn_dataset).recommend(users)
    assert first == second


def test_fit_leaves_the_training_frame_alone(
    prisyn_dataset: pd.DataFrame, model: Recommender
) -> None:
    before = prisyn_dataset.copy()
    model.fit(prisyn_dataset)
    pd.testing.assert_frame_equal(prisyn_dataset, before)
