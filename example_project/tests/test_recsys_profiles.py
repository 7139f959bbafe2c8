"""Different populations want different things, and the models notice."""

from collections import Counter

import pandas as pd
import pytest
from pytest_prisyn.engine import Engine

from recsys import default_models

SIZES = {"n_users": 300, "n_items": 400, "n_interactions": 12_000, "seed": 7}
# Each profile's three (gamer: two) most declared categories.
FAVOURITES = {
    "gamer": {"video-games", "gaming-hardware"},
    "foodie": {"restaurants", "cookware", "groceries"},
    "fitness": {"fitness-gear", "sportswear", "supplements"},
}


def top_categories(frame: pd.DataFrame, k: int = 10) -> Counter[str]:
    """Categories of the k items with the most interactions."""
    category = frame.drop_duplicates("item_id").set_index("item_id")["category"]
    top = frame["item_id"].value_counts().index[:k]
    return Counter(str(name) for name in category.loc[top])


@pytest.mark.prisyn(**SIZES)
@pytest.mark.parametrize(
    ("prisyn_dataset", "favourites"),
    list(FAVOURITES.items()),
    indirect=["prisyn_dataset"],
)
def test_popular_items_come_from_the_profiles_favourite_categories(
    prisyn_dataset: pd.DataFrame, favourites: set[str]
) -> None:
    top = top_categories(prisyn_dataset)
    assert sum(top[name] for name in favourites) >= 6, top


def test_profiles_get_different_top_categories(prisyn: Engine) -> None:
    tops = {
        profile: top_categories(prisyn.dataset(profile, **SIZES))
        for profile in ("gamer", "foodie")
    }
    leads = {profile: top.most_common(1)[0][0] for profile, top in tops.items()}

    assert leads["gamer"] in FAVOURITES["gamer"], tops
    assert leads["foodie"] in FAVOURITES["foodie"], tops
    assert not set(tops["gamer"]) & set(tops["foodie"]), tops


@pytest.mark.prisyn(profile={"gamer": 0.5, "foodie": 0.5}, **SIZES)
class TestMixedPopulation:
    """Half gamers, half foodies in one dataset and one catalog."""

    def test_catalog_matches_the_interactions(
        self, prisyn_dataset: pd.DataFrame, prisyn_catalog: pd.DataFrame
    ) -> None:
        assert prisyn_catalog["item_id"].is_unique
        assert set(prisyn_dataset["item_id"]) <= set(prisyn_catalog["item_id"])
        joined = prisyn_dataset.merge(
            prisyn_catalog, on="item_id", suffixes=("", "_catalog")
        )
        assert (
            joined["category"].astype(str) == joined["category_catalog"].astype(str)
        ).all()

    def test_each_profile_has_its_own_best_sellers(
        self, prisyn_dataset: pd.DataFrame
    ) -> None:
        leads = {
            str(profile): top_categories(rows).most_common(1)[0][0]
            for profile, rows in prisyn_dataset.groupby("profile", observed=True)
        }
        assert leads["gamer"] in FAVOURITES["gamer"], leads
        assert leads["foodie"] in FAVOURITES["foodie"], leads

    @pytest.mark.parametrize("name", ["itemknn", "mf"])
    def test_personalised_models_stay_within_each_users_tastes(
        self, prisyn_dataset: pd.DataFrame, prisyn_catalog: pd.DataFrame, name: str
    ) -> None:
        on_taste = {
            model: share_on_taste(model, prisyn_dataset, prisyn_catalog)
            for model in (name, "popularity")
        }
        assert on_taste[name] >= 0.9, on_taste
        assert on_taste[name] >= on_taste["popularity"] + 0.3, on_taste


def share_on_taste(name: str, frame: pd.DataFrame, catalog: pd.DataFrame) -> float:
    """Share of a model's top-10 items in a category the user's profile favours.

    A profile favours the categories with at least 5% of its interactions.
    """
    shares = pd.crosstab(frame["profile"], frame["category"], normalize="index")
    favoured = {
        str(profile): set(shares.columns[shares.loc[profile] >= 0.05].astype(str))
        for profile in shares.index
    }
    category = catalog.set_index("item_id")["category"].astype(str)
    profile_of = frame.groupby("user_id")["profile"].first().astype(str)
    model = default_models()[name].fit(frame)
    hits = [
        category[item] in favoured[profile_of[user]]
        for user, items in model.recommend(profile_of.index, k=10).items()
        for item in items
    ]
    return sum(hits) / len(hits)
