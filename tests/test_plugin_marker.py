"""The ``prisyn`` marker, the dataset fixtures and the ``prisyn`` session fixture."""

from __future__ import annotations

import pytest

SIZES = "n_users=20, n_items=50, n_interactions=300"


@pytest.fixture
def run(pytester: pytest.Pytester):
    """Run an inner suite in-process with the simulator and no network."""

    def run_suite(*args: str) -> pytest.RunResult:
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run_suite


def test_dataset_meets_the_documented_contract(pytester, run):
    pytester.makepyfile(
        f"""
        import pandas as pd
        import pytest

        @pytest.mark.prisyn(profile="tech", {SIZES})
        def test_contract(prisyn_dataset):
            frame = prisyn_dataset
            assert list(frame.columns) == [
                "user_id", "item_id", "rating", "timestamp", "profile", "category"
            ]
            assert len(frame) == 300
            assert frame["user_id"].nunique() == 20
            assert sorted(frame["user_id"].unique()) == list(range(1, 21))
            assert not frame.duplicated(["user_id", "item_id"]).any()
            assert frame["user_id"].dtype == "int64"
            assert frame["item_id"].dtype == "int64"
            assert frame["rating"].dtype == "float64"
            assert frame["rating"].between(1, 5).all()
            assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
            assert isinstance(frame["profile"].dtype, pd.CategoricalDtype)
            assert isinstance(frame["category"].dtype, pd.CategoricalDtype)
            assert set(frame["profile"]) == {{"tech"}}
            assert frame["item_id"].between(1, 50).all()
        """
    )
    run().assert_outcomes(passed=1)


def test_contract_holds_when_served_from_cache(pytester, run):
    pytester.makepyfile(
        f"""
        import pandas as pd
        import pytest

        @pytest.mark.prisyn("fitness", {SIZES})
        def test_dtypes(prisyn_dataset, prisyn_catalog):
            dtypes = {{k: str(v) for k, v in prisyn_dataset.dtypes.items()}}
            assert dtypes == {{
                "user_id": "int64",
                "item_id": "int64",
                "rating": "float64",
                "timestamp": "datetime64[ns, UTC]",
                "profile": "category",
                "category": "category",
            }}
            assert prisyn_catalog["item_id"].dtype == "int64"
            assert isinstance(prisyn_catalog["category"].dtype, pd.CategoricalDtype)
        """
    )
    run().assert_outcomes(passed=1)
    second = run()
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*0 generated*"])


def test_positional_profile(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("gamer", {SIZES})
        def test_positional(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {{"gamer"}}
        """
    )
    run().assert_outcomes(passed=1)


def test_closest_mark_wins_argument_by_argument(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.prisyn(
            profile="tech", n_users=30, n_items=40, n_interactions=200, seed=1
        )

        @pytest.mark.prisyn(n_items=60)
        class TestClass:
            @pytest.mark.prisyn(profile="fitness")
            def test_all_levels(self, prisyn_dataset):
                assert set(prisyn_dataset["profile"]) == {"fitness"}
                assert prisyn_dataset["user_id"].nunique() == 30
                assert len(prisyn_dataset) == 200
                assert prisyn_dataset["item_id"].max() > 40

            def test_class_and_module(self, prisyn_dataset):
                assert set(prisyn_dataset["profile"]) == {"tech"}
                assert prisyn_dataset["user_id"].nunique() == 30

        def test_module_only(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {"tech"}
            assert prisyn_dataset["user_id"].nunique() == 30
            assert prisyn_dataset["item_id"].max() <= 40
        """
    )
    run().assert_outcomes(passed=3)


def test_function_mark_overrides_module_profile(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.prisyn("tech", {SIZES})

        @pytest.mark.prisyn("foodie")
        def test_override(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {{"foodie"}}
        """
    )
    run().assert_outcomes(passed=1)


def test_seed_changes_the_data(pytester, run):
    pytester.makepyfile(
        f"""
        import pandas as pd
        import pytest

        @pytest.fixture(scope="module")
        def frames(prisyn):
            return {{
                seed: prisyn.dataset("tech", {SIZES}, seed=seed) for seed in (0, 1)
            }}

        def test_seeds_differ(frames):
            assert not frames[0].equals(frames[1])

        def test_same_seed_same_frame(prisyn, frames):
            pd.testing.assert_frame_equal(
                prisyn.dataset("tech", {SIZES}, seed=0), frames[0]
            )
        """
    )
    run().assert_outcomes(passed=2)


def test_list_of_profiles_splits_users_evenly(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn(["tech", "fitness"], {SIZES})
        def test_split(prisyn_dataset):
            users = prisyn_dataset.groupby("profile", observed=True)["user_id"]
            assert users.nunique().to_dict() == {{"fitness": 10, "tech": 10}}
        """
    )
    run().assert_outcomes(passed=1)


def test_mapping_of_shares_is_respected(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn(
            {"tech": 0.75, "music": 0.25}, n_users=40, n_items=50, n_interactions=400
        )
        def test_shares(prisyn_dataset):
            users = prisyn_dataset.groupby("profile", observed=True)["user_id"]
            counts = users.nunique().to_dict()
            assert abs(counts["tech"] - 30) <= 1
            assert abs(counts["music"] - 10) <= 1
            assert counts["tech"] + counts["music"] == 40
        """
    )
    run().assert_outcomes(passed=1)


def test_indirect_parametrization_gives_one_test_per_profile(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.prisyn({SIZES})

        @pytest.mark.parametrize("prisyn_dataset", ["tech", "fitness"], indirect=True)
        def test_each(prisyn_dataset, request):
            expected = request.node.callspec.id
            assert set(prisyn_dataset["profile"]) == {{expected}}
            assert len(prisyn_dataset) == 300
        """
    )
    result = run("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_each?tech? PASSED*", "*test_each?fitness? PASSED*"]
    )


def test_indirect_parameter_overrides_the_mark(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("tech", {SIZES})
        @pytest.mark.parametrize("prisyn_dataset", ["bookworm"], indirect=True)
        def test_param_beats_mark(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {{"bookworm"}}
        """
    )
    run().assert_outcomes(passed=1)


def test_indirect_parameter_may_be_a_dict_of_arguments(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn({SIZES})
        @pytest.mark.parametrize(
            "prisyn_dataset", [{{"profile": "traveller", "n_users": 25}}], indirect=True
        )
        def test_dict_param(prisyn_dataset):
            assert set(prisyn_dataset["profile"]) == {{"traveller"}}
            assert prisyn_dataset["user_id"].nunique() == 25
        """
    )
    run().assert_outcomes(passed=1)


def test_each_test_gets_its_own_copy(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        pytestmark = pytest.mark.prisyn("tech", {SIZES})

        def test_1_mutates(prisyn_dataset, prisyn_catalog):
            prisyn_dataset.loc[0, "rating"] = -1.0
            prisyn_dataset.iat[1, 2] = -1.0
            prisyn_catalog.loc[0, "name"] = "changed"
            prisyn_dataset["rating"] = 0.0
            prisyn_dataset.drop(prisyn_dataset.index[:100], inplace=True)
            prisyn_catalog["name"] = "changed"

        def test_2_sees_pristine_data(prisyn_dataset, prisyn_catalog):
            assert len(prisyn_dataset) == 300
            assert prisyn_dataset["rating"].between(1, 5).all()
            assert (prisyn_catalog["name"] != "changed").all()
        """
    )
    run("-p", "no:randomly").assert_outcomes(passed=2)


def test_engine_dataset_returns_a_fresh_copy_each_call(pytester, run):
    pytester.makepyfile(
        f"""
        def test_fresh(prisyn):
            first = prisyn.dataset("tech", {SIZES})
            first["rating"] = 0.0
            again = prisyn.dataset("tech", {SIZES})
            assert again["rating"].between(1, 5).all()
        """
    )
    run().assert_outcomes(passed=1)


def test_session_fixture_api(pytester, run):
    pytester.makepyfile(
        f"""
        def test_api(prisyn):
            names = prisyn.profiles()
            assert len(names) == 9
            assert set(names) == {{
                "tech", "fitness", "foodie", "bookworm", "gamer",
                "cinephile", "traveller", "music", "movielens",
            }}
            frame = prisyn.dataset("cinephile", {SIZES})
            catalog = prisyn.catalog("cinephile", {SIZES})
            assert list(catalog.columns) == ["item_id", "name", "category"]
            assert len(catalog) == 50
            assert catalog["item_id"].is_unique
            assert set(frame["item_id"]) <= set(catalog["item_id"])
            joined = frame.merge(catalog, on="item_id", suffixes=("", "_catalog"))
            assert len(joined) == len(frame)
            assert (
                joined["category"].astype(str) == joined["category_catalog"].astype(str)
            ).all()
        """
    )
    run().assert_outcomes(passed=1)


def test_catalog_fixture_matches_the_dataset(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn("music", {SIZES})
        def test_catalog(prisyn_dataset, prisyn_catalog):
            assert list(prisyn_catalog.columns) == ["item_id", "name", "category"]
            assert set(prisyn_dataset["item_id"]) <= set(prisyn_catalog["item_id"])
            assert prisyn_catalog["name"].notna().all()
        """
    )
    run().assert_outcomes(passed=1)


def test_usable_from_a_module_scoped_user_fixture(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.fixture(scope="module")
        def ratings(prisyn):
            return prisyn.dataset("movielens", {SIZES})

        def test_one(ratings):
            assert len(ratings) == 300

        def test_two(ratings):
            assert set(ratings["profile"]) == {{"movielens"}}
        """
    )
    run().assert_outcomes(passed=2)


def test_engine_dataset_accepts_a_list_and_shares(pytester, run):
    pytester.makepyfile(
        f"""
        def test_forms(prisyn):
            listed = prisyn.dataset(["gamer", "music"], {SIZES})
            assert set(listed["profile"]) == {{"gamer", "music"}}
            shared = prisyn.dataset({{"gamer": 1, "music": 3}}, {SIZES})
            users = shared.groupby("profile", observed=True)["user_id"].nunique()
            assert users["music"] == 15
            assert users["gamer"] == 5
        """
    )
    run().assert_outcomes(passed=1)


def test_catalog_fixture_follows_indirect_parametrization(pytester, run):
    pytester.makepyfile(
        f"""
        import pandas as pd
        import pytest

        pytestmark = pytest.mark.prisyn({SIZES})

        @pytest.mark.parametrize("prisyn_catalog", ["tech", "foodie"], indirect=True)
        def test_catalog(prisyn_catalog, prisyn, request):
            profile = request.node.callspec.id
            expected = prisyn.catalog(profile, {SIZES})
            pd.testing.assert_frame_equal(prisyn_catalog, expected)
        """
    )
    run().assert_outcomes(passed=2)


def test_catalog_and_clients_follow_an_indirectly_parametrized_dataset(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn(n_users=30, n_items=60, n_interactions=600, clients=3)
        @pytest.mark.parametrize("prisyn_dataset", ["tech", "music"], indirect=True)
        def test_together(prisyn_dataset, prisyn_catalog, prisyn_clients):
            assert set(prisyn_dataset["item_id"]) <= set(prisyn_catalog["item_id"])
            profiles = {str(p) for c in prisyn_clients for p in c.train["profile"]}
            assert profiles == set(prisyn_dataset["profile"].astype(str))
        """
    )
    run().assert_outcomes(passed=2)
