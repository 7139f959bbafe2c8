"""Federated partitions of a dataset and the FedProx Synthetic benchmark."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from pytest_prisyn import federated
from pytest_prisyn.engine import Engine
from pytest_prisyn.errors import RequestError
from pytest_prisyn.federated import Client, heterogeneity, partition, synthetic
from pytest_prisyn.quality import gini, js_divergence
from pytest_prisyn.request import DATASET_ARGUMENTS

SMALL = {"n_users": 60, "n_items": 300, "n_interactions": 1500}
LARGER = {"n_users": 200, "n_items": 300, "n_interactions": 5000}
SEEDED = ("iid", "dirichlet", "pathological", "size")
KEEPS_EVERY_ROW = ("natural", "grouped", "iid", "dirichlet", "size")


@pytest.fixture(scope="module")
def frame(engine: Engine) -> pd.DataFrame:
    return engine.dataset("tech", **SMALL)


@pytest.fixture(scope="module")
def larger(engine: Engine) -> pd.DataFrame:
    return engine.dataset("tech", **LARGER)


def split(frame: pd.DataFrame, strategy: str, **arguments: object) -> list[Client]:
    options: dict[str, object] = {"clients": 6, "min_client_interactions": 5}
    if strategy == "natural":
        options = {"clients": None, "min_client_interactions": 1}
    options.update(arguments)
    return partition(frame, strategy=strategy, **options)  # type: ignore[arg-type]


def all_rows(clients: list[Client]) -> pd.DataFrame:
    return pd.concat([part for c in clients for part in (c.train, c.test)])


# -- invariants of every strategy ------------------------------------------------


@pytest.mark.parametrize("strategy", federated.STRATEGIES)
def test_every_user_belongs_to_exactly_one_client(frame, strategy):
    clients = split(frame, strategy)

    owners: dict[int, int] = {}
    for client in clients:
        users = set(client.train["user_id"]) | set(client.test["user_id"])
        assert users == set(client.user_ids)
        for user in users:
            assert user not in owners, f"user {user} in clients {owners[user]} and "
            owners[user] = client.client_id
    assert [c.client_id for c in clients] == list(range(len(clients)))
    if strategy in KEEPS_EVERY_ROW:
        assert sorted(owners) == sorted(frame["user_id"].unique())


@pytest.mark.parametrize("strategy", KEEPS_EVERY_ROW)
def test_train_plus_test_is_the_frame(frame, strategy):
    rows = all_rows(split(frame, strategy)).sort_index()

    pd.testing.assert_frame_equal(rows, frame)


def test_pathological_keeps_a_subset_of_the_rows_unchanged(frame):
    rows = all_rows(split(frame, "pathological", classes_per_client=2))

    assert rows.index.is_unique
    assert 0 < len(rows) < len(frame)
    pd.testing.assert_frame_equal(
        rows.sort_index(), frame.loc[rows.index.sort_values()]
    )


@pytest.mark.parametrize("held_out", [1, 2])
@pytest.mark.parametrize("strategy", ["iid", "pathological"])
def test_each_user_holds_out_their_latest_interactions(frame, strategy, held_out):
    for client in split(frame, strategy, test_per_user=held_out):
        for user in client.user_ids:
            train = client.train[client.train["user_id"] == user]
            test = client.test[client.test["user_id"] == user]
            rows = pd.concat([train, test]).sort_values(["timestamp", "item_id"])
            if len(rows) <= held_out:
                assert test.empty
                continue
            latest = rows.tail(held_out)
            assert sorted(test.index) == sorted(latest.index)


def test_ties_in_time_are_broken_by_item_id():
    stamp = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item_id": [7, 9, 8, 7],
            "rating": [4.0, 3.0, 5.0, 2.0],
            "timestamp": [stamp, stamp, stamp, stamp],
            "category": pd.Categorical(["a", "a", "b", "a"]),
        }
    )

    (client,) = partition(frame, strategy="iid", clients=1, min_client_interactions=1)

    assert client.test["item_id"].tolist() == [9]
    assert client.train["user_id"].tolist() == [1, 1, 2]
    assert client.train["item_id"].tolist() == [7, 8, 7]


def test_users_with_too_few_interactions_stay_train_only(frame):
    clients = split(frame, "iid", test_per_user=3)

    counts = frame.groupby("user_id").size()
    for client in clients:
        for user in client.user_ids:
            tested = int((client.test["user_id"] == user).sum())
            assert tested == (3 if counts[user] > 3 else 0)


def test_no_test_set_with_zero_held_out(frame):
    clients = split(frame, "iid", test_per_user=0)

    assert all(c.test.empty for c in clients)
    assert sum(len(c.train) for c in clients) == len(frame)


# -- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("strategy", federated.STRATEGIES)
def test_same_seed_same_partition(frame, strategy):
    first, second = split(frame, strategy, seed=3), split(frame, strategy, seed=3)

    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a.train, b.train)
        pd.testing.assert_frame_equal(a.test, b.test)


@pytest.mark.parametrize("strategy", SEEDED)
def test_another_seed_another_partition(frame, strategy):
    def users(seed: int) -> list[list[int]]:
        return [c.user_ids for c in split(frame, strategy, seed=seed)]

    assert users(1) != users(2)


@pytest.mark.parametrize("strategy", ["natural", "grouped"])
def test_natural_and_grouped_ignore_the_seed(frame, strategy):
    def users(seed: int) -> list[list[int]]:
        return [c.user_ids for c in split(frame, strategy, seed=seed)]

    assert users(1) == users(2)


# -- what each strategy does -------------------------------------------------------


def test_natural_gives_one_client_per_user_in_id_order(frame):
    clients = split(frame, "natural")

    users = sorted(frame["user_id"].unique())
    assert [c.user_ids for c in clients] == [[u] for u in users]


def test_natural_refuses_another_client_count(frame):
    with pytest.raises(RequestError, match=r"one client per user.*60 users.*clients=6"):
        partition(frame, strategy="natural", clients=6)


def test_grouped_cuts_consecutive_ids_into_near_equal_groups(frame):
    clients = split(frame, "grouped", clients=7)

    groups = [c.user_ids for c in clients]
    assert list(itertools.chain(*groups)) == list(range(1, 61))
    assert {len(g) for g in groups} == {8, 9}


def test_iid_spreads_users_evenly(frame):
    clients = split(frame, "iid", clients=7)

    assert {len(c.user_ids) for c in clients} == {8, 9}
    assert [c.user_ids for c in clients] != [
        c.user_ids for c in split(frame, "grouped", clients=7)
    ]


def mean_divergence(frame: pd.DataFrame, strategy: str, **arguments: object) -> float:
    return float(
        np.mean(
            [
                heterogeneity(
                    split(frame, strategy, seed=seed, **arguments)
                ).category_js_pairwise
                for seed in range(3)
            ]
        )
    )


def test_small_alpha_dirichlet_is_the_most_heterogeneous(larger):
    very_skewed = mean_divergence(larger, "dirichlet", alpha=0.1)
    mild = mean_divergence(larger, "dirichlet", alpha=1.0)
    near_iid = mean_divergence(larger, "dirichlet", alpha=100.0)
    iid = mean_divergence(larger, "iid")

    assert very_skewed > mild > near_iid
    assert very_skewed > 3 * iid
    assert near_iid < 2 * iid


def test_dirichlet_redraws_until_every_client_is_large_enough(frame):
    clients = split(frame, "dirichlet", alpha=0.05, min_client_interactions=40)

    assert min(c.n_interactions for c in clients) >= 40


@pytest.mark.parametrize("per_client", [1, 2, 3])
def test_pathological_clients_see_at_most_c_categories(frame, per_client):
    clients = split(frame, "pathological", classes_per_client=per_client)

    for client in clients:
        seen = set(client.train["category"]) | set(client.test["category"])
        assert 1 <= len(seen) <= per_client
    report = heterogeneity(clients)
    assert report.categories_per_client <= per_client


def test_pathological_covers_every_category_when_clients_suffice(frame):
    clients = split(frame, "pathological", clients=6, classes_per_client=2)

    seen = set(all_rows(clients)["category"])
    assert seen == set(frame["category"])


def test_pathological_fills_every_client_to_the_minimum(larger):
    clients = split(
        larger,
        "pathological",
        clients=40,
        classes_per_client=1,
        min_client_interactions=15,
    )

    assert min(c.n_interactions for c in clients) >= 15
    assert all(len(set(c.train["category"])) == 1 for c in clients)


def test_pathological_refuses_more_classes_than_categories(frame):
    with pytest.raises(RequestError, match=r"classes_per_client=12 .* 9 categories"):
        split(frame, "pathological", classes_per_client=12)


def test_size_skew_spreads_client_sizes_more_than_iid(larger):
    def mean_gini(strategy: str) -> float:
        return float(
            np.mean(
                [
                    heterogeneity(split(larger, strategy, seed=s)).size_gini
                    for s in range(5)
                ]
            )
        )

    assert mean_gini("size") > 2 * mean_gini("iid")


def test_size_skew_follows_its_heavier_law(larger):
    def mean_gini(sigma: float) -> float:
        return float(
            np.mean(
                [
                    heterogeneity(
                        split(larger, "size", seed=s, size_sigma=sigma)
                    ).size_gini
                    for s in range(5)
                ]
            )
        )

    assert mean_gini(1.2) > mean_gini(0.3)


# -- errors --------------------------------------------------------------------------


def test_too_small_a_client_is_named_with_its_counts(frame):
    with pytest.raises(RequestError) as caught:
        partition(frame, strategy="natural", clients=None, min_client_interactions=10)

    message = str(caught.value)
    smallest = int(frame.groupby("user_id").size().min())
    assert f"got {smallest} interactions, fewer than min_client_interactions=10" in (
        message
    )
    assert message.startswith("client ")
    assert "partition='natural'" in message
    assert "lower min_client_interactions" in message


def test_more_clients_than_users_is_refused(frame):
    with pytest.raises(RequestError, match=r"clients=61 is more than the 60 users"):
        partition(frame, strategy="iid", clients=61)


def test_unknown_strategy_lists_the_accepted_ones(frame):
    with pytest.raises(RequestError) as caught:
        partition(frame, strategy="shards", clients=3)

    assert str(caught.value) == (
        "partition='shards' is not a partitioning strategy; accepted: natural, "
        "grouped, iid, dirichlet, pathological, size"
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"clients": 0}, r"clients=0 is out of range; accepted: >= 1"),
        ({"clients": 2.5}, r"clients must be an integer >= 1, got 2.5"),
        ({"alpha": 0}, r"alpha=0 must be a positive number"),
        ({"alpha": float("nan")}, r"alpha must be a finite number, got nan"),
        ({"test_per_user": -1}, r"test_per_user=-1 is out of range"),
        ({"min_client_interactions": True}, r"min_client_interactions must be an"),
        ({"seed": -3}, r"seed=-3 is out of range"),
    ],
)
def test_bad_arguments_are_named(frame, arguments, expected):
    options = {"strategy": "dirichlet", "clients": 3, **arguments}
    with pytest.raises(RequestError, match=expected):
        partition(frame, **options)


def test_a_frame_without_the_needed_columns_is_refused(frame):
    with pytest.raises(RequestError, match=r"without column\(s\) category"):
        partition(frame.drop(columns="category"), strategy="iid", clients=2)


# -- heterogeneity report ------------------------------------------------------------


def test_report_agrees_with_the_reference_measures(frame):
    clients = split(frame, "dirichlet", alpha=0.3)
    report = heterogeneity(clients)

    categories = list(frame["category"].cat.categories)
    mixes = [
        all_rows([c])["category"].value_counts().reindex(categories, fill_value=0)
        for c in clients
    ]
    pairs = [js_divergence(p, q) for p, q in itertools.combinations(mixes, 2)]
    pooled = frame["category"].value_counts().reindex(categories)
    sizes = [c.n_interactions for c in clients]
    assert report.category_js_pairwise == pytest.approx(np.mean(pairs), abs=1e-12)
    assert report.category_js_to_global == pytest.approx(
        np.mean([js_divergence(m, pooled) for m in mixes]), abs=1e-12
    )
    assert report.size_gini == pytest.approx(gini(sizes))
    assert (report.size_min, report.size_max) == (min(sizes), max(sizes))
    assert report.size_median == float(np.median(sizes))
    assert report.interactions == len(frame)
    assert report.users == 60
    assert report.clients == 6


def test_report_as_dict(frame):
    report = heterogeneity(split(frame, "iid")).to_dict()

    assert set(report) == {
        "clients",
        "users",
        "interactions",
        "size_min",
        "size_median",
        "size_max",
        "size_gini",
        "users_min",
        "users_max",
        "categories_per_client",
        "category_js_pairwise",
        "category_js_to_global",
    }
    assert all(isinstance(v, int | float) for v in report.values())


def test_identical_clients_have_zero_divergence(frame):
    twin = Client(0, frame, frame.iloc[:0])
    report = heterogeneity([twin, Client(1, frame, frame.iloc[:0])])

    assert report.category_js_pairwise == 0.0
    assert report.size_gini == 0.0


# -- through the engine --------------------------------------------------------------


def test_engine_level_clients_use_the_documented_defaults(engine, frame):
    clients = federated.clients(engine, "tech", **SMALL)

    assert len(clients) == 10
    assert {len(c.user_ids) for c in clients} == {6}
    expected = partition(frame, strategy="iid", clients=10, seed=0)
    assert [c.user_ids for c in clients] == [c.user_ids for c in expected]


def test_engine_level_clients_are_seeded_by_the_dataset_seed(engine):
    arguments = {**SMALL, "partition": "iid", "clients": 4}
    first = federated.clients(engine, "tech", seed=1, **arguments)
    again = federated.clients(engine, "tech", seed=1, **arguments)
    other = federated.clients(engine, "tech", seed=2, **arguments)

    assert [c.user_ids for c in first] == [c.user_ids for c in again]
    assert [c.user_ids for c in first] != [c.user_ids for c in other]


def test_engine_level_natural_needs_no_client_count(engine):
    clients = federated.clients(
        engine, "tech", partition="natural", min_client_interactions=1, **SMALL
    )

    assert len(clients) == 60


# -- FedProx Synthetic ---------------------------------------------------------------


def test_synthetic_devices_have_the_paper_shapes():
    devices = synthetic(0.5, 0.5, devices=30, seed=0)

    assert [d.device_id for d in devices] == list(range(30))
    for device in devices:
        (x_train, y_train), (x_test, y_test) = device.train, device.test
        assert x_train.dtype == np.float64
        assert y_train.dtype == np.int64
        assert x_train.shape == (len(y_train), 60)
        assert x_test.shape == (len(y_test), 60)
        assert device.weights.shape == (10, 60)
        assert device.bias.shape == (10,)
        assert device.feature_mean.shape == (60,)
        assert set(np.unique(np.concatenate([y_train, y_test]))) <= set(range(10))


def test_synthetic_splits_each_device_ninety_ten():
    for device in synthetic(0.0, 0.0, devices=30, seed=4):
        n = device.n_samples
        assert len(device.train[1]) == math.floor(0.9 * n)
        assert len(device.test[1]) == n - math.floor(0.9 * n)


def test_sample_counts_follow_floor_lognormal_plus_fifty():
    devices = synthetic(1.0, 1.0, devices=200, seed=7)

    counts = np.array([d.n_samples for d in devices])
    drawn = np.random.default_rng(7).lognormal(4.0, 2.0, 200)
    assert counts.tolist() == (np.floor(drawn).astype(int) + 50).tolist()
    assert counts.min() >= 50
    assert math.exp(3.5) < np.median(counts - 50) < math.exp(4.5)


def test_labels_are_the_argmax_of_the_device_model():
    for device in synthetic(1.0, 1.0, devices=5, seed=2):
        x, y = device.train
        assert (np.argmax(x @ device.weights.T + device.bias, axis=1) == y).all()


@functools.cache
def spread_of_models(alpha: float) -> float:
    devices = synthetic(alpha, 0.0, devices=200, seed=11)
    return float(np.var([d.weights.mean() for d in devices]))


@functools.cache
def spread_of_features(beta: float) -> float:
    devices = synthetic(0.0, beta, devices=200, seed=11)
    return float(np.var([d.train[0].mean() for d in devices]))


def test_larger_alpha_spreads_the_device_models():
    assert spread_of_models(1.0) > spread_of_models(0.5) > spread_of_models(0.0)
    # alpha is the variance of u_k (the paper's text): Var(mean W_k) = alpha + 1/610.
    assert spread_of_models(0.5) == pytest.approx(0.5 + 1 / 610, rel=0.25)
    assert spread_of_models(0.0) < 0.01


def test_larger_beta_spreads_the_feature_means():
    assert spread_of_features(1.0) > spread_of_features(0.5) > spread_of_features(0.0)
    assert spread_of_features(0.5) == pytest.approx(0.5 + 1 / 60, rel=0.25)
    assert spread_of_features(0.0) < 0.05


def test_alpha_leaves_features_and_beta_leaves_models_alone():
    wide_models = synthetic(1.0, 0.0, devices=100, seed=5)
    wide_features = synthetic(0.0, 1.0, devices=100, seed=5)

    assert np.var([d.feature_mean.mean() for d in wide_models]) < 0.05
    assert np.var([d.weights.mean() for d in wide_features]) < 0.01


def test_iid_variant_shares_one_model_and_one_feature_law():
    devices = synthetic(1.0, 1.0, devices=10, seed=3, iid=True)

    for device in devices[1:]:
        assert np.array_equal(device.weights, devices[0].weights)
        assert np.array_equal(device.bias, devices[0].bias)
    assert all(not d.feature_mean.any() for d in devices)
    features = np.concatenate([d.train[0] for d in devices])
    assert abs(features.mean()) < 0.05


def test_synthetic_is_deterministic_for_a_seed():
    first, again = synthetic(0.5, 0.5, seed=9), synthetic(0.5, 0.5, seed=9)
    other = synthetic(0.5, 0.5, seed=10)

    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.train[0], b.train[0])
        assert np.array_equal(a.test[1], b.test[1])
    assert not np.array_equal(first[0].weights, other[0].weights)


def test_max_samples_caps_the_heavy_tail():
    devices = synthetic(0.0, 0.0, devices=200, seed=7, max_samples=400)

    counts = [d.n_samples for d in devices]
    assert max(counts) == 400
    assert min(counts) >= 50


def test_a_draw_too_large_for_memory_is_refused_before_it_is_made():
    with pytest.raises(RequestError, match=r"pass max_samples, fewer devices"):
        synthetic(0.0, 0.0, devices=30, dimension=200_000)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"alpha": -1.0}, r"alpha=-1.0 must be zero or a positive number"),
        ({"beta": float("inf")}, r"beta must be a finite number"),
        ({"devices": 0}, r"devices=0 is out of range"),
        ({"classes": 1}, r"classes=1 is out of range; accepted: >= 2"),
        ({"max_samples": 10}, r"max_samples=10 is out of range; accepted: >= 50"),
    ],
)
def test_bad_synthetic_arguments_are_named(arguments, expected):
    options = {"alpha": 0.5, "beta": 0.5, **arguments}
    with pytest.raises(RequestError, match=expected):
        synthetic(**options)


def test_marker_arguments_choose_the_synthetic_variant():
    devices = federated.fedprox_devices(alpha=1, beta=0, devices=4, seed=1)
    iid = federated.fedprox_devices(devices=4, partition="iid", profile="tech")

    assert len(devices) == 4
    assert np.array_equal(iid[0].weights, iid[3].weights)
    with pytest.raises(RequestError, match=r"partition only to choose Synthetic-IID"):
        federated.fedprox_devices(partition="dirichlet")


def test_plain_columns_work_too():
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 2],
            "item_id": [1, 2, 1, 3, 4],
            "rating": [4.0, 5.0, 3.0, 1.0, 2.0],
            "timestamp": [30, 10, 5, 7, 6],
            "category": ["b", "a", "a", "c", "a"],
        }
    )

    clients = partition(frame, strategy="grouped", clients=2, min_client_interactions=1)

    assert clients[0].test["item_id"].tolist() == [1]
    assert clients[1].test["item_id"].tolist() == [3]
    report = heterogeneity(clients)
    assert report.categories_per_client == 2.0
    assert report.category_js_pairwise > 0


def test_engine_clients_matches_the_fixture_path(engine: Engine) -> None:
    made = engine.clients(
        "tech", n_users=40, n_interactions=800, clients=4, partition="iid"
    )

    assert len(made) == 4
    assert sum(len(c.train) + len(c.test) for c in made) == 800


@pytest.mark.parametrize("method", ["dataset", "catalog", "entry", "estimate"])
def test_a_dataset_request_refuses_federated_arguments(engine: Engine, method: str):
    with pytest.raises(RequestError) as refused:
        getattr(engine, method)("tech", clients=5, partition="iid", **SMALL)

    message = str(refused.value)
    assert message.startswith(
        "'clients', 'partition' are for the federated fixtures, not a dataset: "
        "prisyn.clients(...) and prisyn_clients take clients, partition, alpha,"
    )
    assert "prisyn_fedprox_synthetic takes alpha, beta, devices" in message
    assert message.endswith("A dataset takes: " + ", ".join(DATASET_ARGUMENTS))


def test_one_federated_argument_is_named_in_the_singular(engine: Engine) -> None:
    with pytest.raises(RequestError, match=r"^'devices' is for the federated"):
        engine.dataset("tech", devices=3, **SMALL)


def test_a_dataset_request_names_its_own_arguments_when_one_is_unknown(
    engine: Engine,
) -> None:
    with pytest.raises(RequestError) as refused:
        engine.dataset("tech", client=3, **SMALL)

    assert str(refused.value) == (
        "unknown dataset argument(s) 'client'; accepted: "
        + ", ".join(DATASET_ARGUMENTS)
    )


def test_clients_take_the_federated_arguments_the_dataset_refuses(engine: Engine):
    made = engine.clients("tech", clients=5, partition="iid", **SMALL)

    assert len(made) == 5
