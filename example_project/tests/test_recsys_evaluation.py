"""The leave-last-out split and the top-k metrics."""

import math

import pandas as pd
import pytest

from recsys import Popularity, evaluate, hit_rate_at_k, leave_last_out, ndcg_at_k

pytestmark = pytest.mark.prisyn(
    profile="bookworm", n_users=150, n_items=250, n_interactions=3000, seed=11
)


def held_out(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    """A test frame from (user_id, item_id) pairs."""
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


def test_split_holds_out_each_users_latest_interaction(
    prisyn_dataset: pd.DataFrame,
) -> None:
    train, test = leave_last_out(prisyn_dataset)

    assert len(train) + len(test) == len(prisyn_dataset)
    assert test["user_id"].is_unique
    assert set(test["user_id"]) == set(prisyn_dataset["user_id"])
    latest = train.groupby("user_id")["timestamp"].max()
    assert (test.set_index("user_id")["timestamp"] >= latest).all()
    rows = ["user_id", "item_id"]
    assert not train.merge(test[rows], on=rows).shape[0], "a test row leaked into train"


def test_users_with_one_interaction_stay_in_train(prisyn_dataset: pd.DataFrame) -> None:
    loners = {1, 2, 3}
    first_rows = prisyn_dataset[prisyn_dataset["user_id"].isin(loners)].groupby(
        "user_id"
    )
    frame = pd.concat(
        [prisyn_dataset[~prisyn_dataset["user_id"].isin(loners)], first_rows.head(1)]
    )

    train, test = leave_last_out(frame)

    assert loners <= set(train["user_id"])
    assert not loners & set(test["user_id"])


def test_split_does_not_depend_on_row_order(prisyn_dataset: pd.DataFrame) -> None:
    shuffled = prisyn_dataset.sample(frac=1.0, random_state=0)
    for ordered, scrambled in zip(
        leave_last_out(prisyn_dataset), leave_last_out(shuffled), strict=True
    ):
        pd.testing.assert_frame_equal(ordered, scrambled)


def test_hit_rate_counts_users_with_a_hit_in_the_top_k() -> None:
    recommendations = {1: [10, 11, 12], 2: [20, 21, 22], 3: [30]}
    test = held_out([(1, 11), (2, 99), (3, 30), (4, 40)])

    assert hit_rate_at_k(recommendations, test, k=3) == 0.5
    assert hit_rate_at_k(recommendations, test, k=1) == 0.25


def test_ndcg_discounts_hits_by_rank() -> None:
    recommendations = {1: [10, 11, 12], 2: [20, 21, 22]}
    test = held_out([(1, 10), (2, 22)])

    expected = (1.0 + 1.0 / math.log2(4)) / 2
    assert ndcg_at_k(recommendations, test, k=3) == pytest.approx(expected)
    assert ndcg_at_k(recommendations, test, k=2) == pytest.approx(0.5)


def test_ndcg_is_one_when_every_held_out_item_leads() -> None:
    recommendations = {1: [10, 11, 12], 2: [20, 21]}
    test = held_out([(1, 10), (1, 11), (2, 20)])

    assert ndcg_at_k(recommendations, test, k=3) == pytest.approx(1.0)


def test_evaluate_fits_and_scores_the_model(prisyn_dataset: pd.DataFrame) -> None:
    train, test = leave_last_out(prisyn_dataset)

    scores = evaluate(Popularity(), train, test, k=10)

    assert scores["users"] == test["user_id"].nunique()
    assert 0.0 < scores["ndcg"] <= scores["hit_rate"] <= 1.0
