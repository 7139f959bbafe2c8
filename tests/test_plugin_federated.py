"""The federated fixtures, driven by the ``prisyn`` marker, in an inner run."""

from __future__ import annotations

import pytest

MARK = (
    'profile="tech", n_users=60, n_interactions=1500, clients=6, '
    'partition="dirichlet", alpha=0.3'
)


@pytest.fixture
def run(pytester: pytest.Pytester):
    """Run an inner suite in-process with the simulator and no network."""

    def run_suite(*args: str) -> pytest.RunResult:
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run_suite


def setup_error(pytester: pytest.Pytester, run, mark: str, fixture: str) -> str:
    """Run one test under `mark`; assert it errors at set-up cleanly; the output."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.prisyn({mark})
        def test_data({fixture}):
            pass
        """
    )
    result = run()
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "prisyn: " in text
    assert "Traceback" not in text
    assert "pytest_prisyn/" not in text, "traceback from the plugin's internals"
    return text


def test_dirichlet_clients_from_the_marker(pytester, run):
    pytester.makepyfile(
        f"""
        import pytest

        from pytest_prisyn.federated import Client, heterogeneity

        @pytest.mark.prisyn({MARK})
        def test_clients(prisyn_clients, prisyn_dataset):
            assert len(prisyn_clients) == 6
            assert all(isinstance(c, Client) for c in prisyn_clients)
            assert [c.client_id for c in prisyn_clients] == list(range(6))
            users = [u for c in prisyn_clients for u in c.user_ids]
            assert sorted(users) == list(range(1, 61))
            assert sum(c.n_interactions for c in prisyn_clients) == 1500
            assert all(c.n_interactions >= 10 for c in prisyn_clients)
            assert all(len(c.test) == len(c.user_ids) for c in prisyn_clients)
            report = heterogeneity(prisyn_clients)
            assert report.clients == 6
            assert 0 < report.category_js_pairwise < 1
        """
    )
    run().assert_outcomes(passed=1)


def test_clients_are_the_same_in_every_run(pytester, run):
    pytester.makepyfile(
        f"""
        import json
        import pytest

        @pytest.mark.prisyn({MARK})
        def test_record(prisyn_clients, pytestconfig):
            users = [c.user_ids for c in prisyn_clients]
            path = pytestconfig.rootpath / "users.json"
            if path.exists():
                assert json.loads(path.read_text()) == users
            path.write_text(json.dumps(users))
        """
    )
    run().assert_outcomes(passed=1)
    second = run()
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*0 generated*"])


def test_defaults_are_ten_iid_clients_with_one_held_out(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn("fitness", n_users=50, n_interactions=1200)
        def test_defaults(prisyn_clients):
            assert len(prisyn_clients) == 10
            assert {len(c.user_ids) for c in prisyn_clients} == {5}
            for client in prisyn_clients:
                assert client.test.groupby("user_id").size().eq(1).all()
        """
    )
    run().assert_outcomes(passed=1)


def test_the_closest_mark_wins_argument_by_argument(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.prisyn(
            "tech", n_users=60, n_interactions=1500, partition="pathological",
            clients=5,
        )

        @pytest.mark.prisyn(classes_per_client=1)
        def test_one_category_each(prisyn_clients):
            assert len(prisyn_clients) == 5
            for client in prisyn_clients:
                categories = set(client.train["category"]) | set(
                    client.test["category"]
                )
                assert len(categories) == 1
        """
    )
    run().assert_outcomes(passed=1)


def test_natural_partition_needs_no_client_count(pytester, run):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn(
            "tech", n_users=20, n_items=50, n_interactions=400,
            partition="natural", min_client_interactions=2,
        )
        def test_one_client_per_user(prisyn_clients):
            assert [c.user_ids for c in prisyn_clients] == [[u] for u in range(1, 21)]
        """
    )
    run().assert_outcomes(passed=1)


def test_bad_partition_name_lists_the_accepted_ones(pytester, run):
    text = setup_error(
        pytester,
        run,
        '"tech", n_users=60, n_interactions=1500, partition="shards"',
        "prisyn_clients",
    )
    assert (
        "prisyn: partition='shards' is not a partitioning strategy; accepted: "
        "natural, grouped, iid, dirichlet, pathological, size"
    ) in text


def test_too_small_clients_fail_with_the_counts(pytester, run):
    text = setup_error(
        pytester,
        run,
        '"tech", n_users=60, n_interactions=1500, clients=30, '
        "min_client_interactions=60",
        "prisyn_clients",
    )
    assert "fewer than min_client_interactions=60" in text
    assert "prisyn: client " in text


def test_more_clients_than_users_fails(pytester, run):
    text = setup_error(
        pytester,
        run,
        '"tech", n_users=20, n_interactions=300, clients=21',
        "prisyn_clients",
    )
    assert "clients=21 is more than the 20 users" in text


def test_fedprox_synthetic_from_the_marker(pytester, run):
    pytester.makepyfile(
        """
        import numpy as np
        import pytest

        @pytest.mark.prisyn(alpha=1, beta=1, devices=12, seed=3)
        def test_devices(prisyn_fedprox_synthetic):
            devices = prisyn_fedprox_synthetic
            assert len(devices) == 12
            for device in devices:
                x, y = device.train
                assert x.shape[1] == 60
                assert device.n_samples >= 50
                assert len(y) == 9 * device.n_samples // 10
            counts = [d.n_samples for d in devices]
            drawn = np.random.default_rng(3).lognormal(4, 2, 12)
            assert counts == (np.floor(drawn).astype(int) + 50).tolist()

        @pytest.mark.prisyn(devices=5, partition="iid")
        def test_iid(prisyn_fedprox_synthetic):
            first = prisyn_fedprox_synthetic[0]
            assert all(
                np.array_equal(d.weights, first.weights)
                for d in prisyn_fedprox_synthetic
            )

        def test_paper_defaults(prisyn_fedprox_synthetic):
            assert len(prisyn_fedprox_synthetic) == 30
            # Synthetic(0, 0): every device's model and feature means sit near 0.
            spread = np.var([d.weights.mean() for d in prisyn_fedprox_synthetic])
            assert spread < 0.02
        """
    )
    run().assert_outcomes(passed=3)


def test_fedprox_synthetic_bad_argument_fails_cleanly(pytester, run):
    text = setup_error(pytester, run, "alpha=-1", "prisyn_fedprox_synthetic")
    assert "prisyn: alpha=-1 must be zero or a positive number" in text


def test_fixtures_are_listed_with_their_docstrings(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "prisyn_clients -- *",
            "*Federated clients (train/test per user)*",
            "prisyn_fedprox_synthetic -- *",
            "*FedProx ``Synthetic(alpha, beta)`` devices*",
        ]
    )


def test_natural_partition_works_with_default_settings(
    pytester: pytest.Pytester,
) -> None:
    # Personas give users at least 5 interactions; the pooled strategies'
    # default minimum of 10 per client must not apply to one-user clients.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.prisyn("tech", n_users=30, n_interactions=600, partition="natural")
        def test_clients(prisyn_clients):
            assert len(prisyn_clients) == 30
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
