"""Each test gets its own copy of the data: mutations never leak into the next."""

import pandas as pd
import pytest
from pytest_prisyn.engine import Engine

ARGUMENTS = {
    "profile": "music",
    "n_users": 100,
    "n_items": 200,
    "n_interactions": 2000,
    "seed": 3,
}
pytestmark = pytest.mark.prisyn(**ARGUMENTS)


def test_a_test_may_mangle_its_dataset(prisyn_dataset: pd.DataFrame) -> None:
    prisyn_dataset.loc[:, "rating"] = 0.0
    prisyn_dataset.loc[prisyn_dataset.index[0], "user_id"] = -1
    prisyn_dataset["leak"] = 1
    del prisyn_dataset["category"]
    assert (prisyn_dataset["rating"] == 0.0).all()


def test_the_next_test_gets_pristine_data(
    prisyn_dataset: pd.DataFrame, prisyn: Engine
) -> None:
    assert "leak" not in prisyn_dataset
    assert "category" in prisyn_dataset
    assert len(prisyn_dataset) == ARGUMENTS["n_interactions"]
    assert prisyn_dataset["rating"].between(1, 5).all()
    assert prisyn_dataset["user_id"].min() == 1
    pd.testing.assert_frame_equal(prisyn_dataset, prisyn.dataset(**ARGUMENTS))
