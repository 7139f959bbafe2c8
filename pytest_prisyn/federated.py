"""Federated views of interaction data, and the FedProx Synthetic benchmark.

A partition splits a dataset by user: every user belongs to exactly one client,
and each client holds out its users' most recent interactions as its test set.
Strategies carry the names Flower Datasets gives its partitioners. The module
also draws the devices of ``Synthetic(alpha, beta)`` from Li et al. (2018),
"Federated Optimization in Heterogeneous Networks".

Imported lazily by the fixtures: it loads numpy and pandas.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pytest_prisyn.errors import RequestError
from pytest_prisyn.quality import gini

if TYPE_CHECKING:
    from pytest_prisyn.engine import Engine

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STRATEGIES = ("natural", "grouped", "iid", "dirichlet", "pathological", "size")
# What prisyn_clients uses when the marker leaves an argument out.
CLIENT_DEFAULTS: dict[str, Any] = {
    "clients": 10,
    "partition": "iid",
    "alpha": 0.5,
    "classes_per_client": 2,
    "min_client_interactions": 10,
    "test_per_user": 1,
}
# Flower Datasets' DirichletPartitioner also redraws until every partition is
# large enough; it gives up after 10 tries, we allow more because a draw is cheap.
DIRICHLET_ATTEMPTS = 100
SIZE_SIGMA = 1.0

# FedProx Synthetic: the paper's constants.
SYNTHETIC_LOG_MEAN = 4.0
SYNTHETIC_LOG_SIGMA = 2.0
SYNTHETIC_MIN_SAMPLES = 50
SYNTHETIC_COVARIANCE_POWER = -1.2
# LogNormal(4, 2) has a long tail: about one device in a million draws over a
# million samples. Refuse a draw whose feature matrices would pass ~800 MB.
SYNTHETIC_MAX_VALUES = 100_000_000

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp", "category")


@dataclass(frozen=True, eq=False)
class Client:
    """One federated client: its users' training and held-out interactions."""

    client_id: int
    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def user_ids(self) -> list[int]:
        """The client's users, ascending (each has at least one training row)."""
        return sorted(int(user) for user in self.train["user_id"].unique())

    @property
    def n_interactions(self) -> int:
        """Training plus test interactions."""
        return len(self.train) + len(self.test)


def clients(engine: Engine, profile: object = None, **arguments: Any) -> list[Client]:
    """The clients of a dataset: marker arguments in, one partition out.

    Dataset arguments go to ``engine.dataset``; the federated ones (defaults
    in `CLIENT_DEFAULTS`) to `partition`, seeded with the dataset's seed.
    ``beta`` and ``devices`` belong to the FedProx fixture and are ignored.
    """
    if profile is not None:
        arguments["profile"] = profile
    chosen = {
        name: arguments.pop(name)
        for name in (*CLIENT_DEFAULTS, "beta", "devices", "max_samples")
        if name in arguments
    }
    frame = engine.dataset(**arguments)
    strategy = chosen.get("partition", CLIENT_DEFAULTS["partition"])
    default_clients = None if strategy == "natural" else CLIENT_DEFAULTS["clients"]
    # One client per user: a user's own history (a train row and a test row
    # at least) is the natural floor, not the pooled strategies' default.
    default_minimum = (
        2 if strategy == "natural" else CLIENT_DEFAULTS["min_client_interactions"]
    )
    return partition(
        frame,
        strategy=strategy,
        clients=chosen.get("clients", default_clients),
        seed=arguments.get("seed", 0),
        alpha=chosen.get("alpha", CLIENT_DEFAULTS["alpha"]),
        classes_per_client=chosen.get(
            "classes_per_client", CLIENT_DEFAULTS["classes_per_client"]
        ),
        min_client_interactions=chosen.get("min_client_interactions", default_minimum),
        test_per_user=chosen.get("test_per_user", CLIENT_DEFAULTS["test_per_user"]),
    )


def partition(
    frame: pd.DataFrame,
    *,
    strategy: str,
    clients: int | None,
    seed: int = 0,
    alpha: float = 0.5,
    classes_per_client: int = 2,
    min_client_interactions: int = 10,
    test_per_user: int = 1,
    size_sigma: float = SIZE_SIGMA,
) -> list[Client]:
    """Split interactions into federated clients, by user.

    Every strategy assigns whole users to clients (client ids 0, 1, ...):

    - ``natural``: one client per user, client k holding the k-th smallest
      user id; ``clients`` must be None or the number of users.
    - ``grouped``: users in id order, cut into ``clients`` runs of consecutive
      ids whose lengths differ by at most one.
    - ``iid``: users shuffled, then cut the same way.
    - ``dirichlet``: a user's class is their favourite category (most
      interactions; ties to the category listed first). For each category c,
      shares q_c ~ Dir(alpha, ..., alpha) over the clients are drawn, and the
      users of class c (shuffled) are dealt to clients in proportion to q_c,
      rounded by largest remainder. A client's category mix thus follows the
      Dirichlet draws: small alpha puts each category on few clients (very
      non-IID), large alpha approaches IID. A draw that leaves a client under
      ``min_client_interactions`` is redrawn, up to `DIRICHLET_ATTEMPTS` times.
    - ``pathological``: categories are shuffled and client k holds categories
      (k * c + t) mod C of that order, t < c = ``classes_per_client``, so each
      category sits on about clients * c / C clients. A user keeps only their
      interactions in their client's categories: this is the one strategy
      that drops rows (and users left with none). First, while a client keeps
      fewer than ``min_client_interactions``, the emptiest such client takes
      the unassigned user who keeps the most in it; then the other users,
      most active first, go to the least loaded client holding their favourite
      category (if none does, to one where they keep the most).
    - ``size``: client k's share of interactions is min_client_interactions plus
      a part of the rest proportional to w_k ~ LogNormal(0, ``size_sigma``);
      users, most active first, go to the client furthest below its share.

    Per user, the ``test_per_user`` latest interactions (by timestamp, ties by
    item id) form the test set; a user with no more than that stays train-only.
    Rows keep the frame's index labels and are ordered by user, time, item.
    The result depends only on the arguments: ``natural`` and ``grouped`` do
    not use the seed. A client with fewer than ``min_client_interactions``
    interactions (train plus test) raises `RequestError`.
    """
    _check_columns(frame)
    choice = _strategy(strategy)
    table = _UserTable.of(frame)
    count = _client_count(choice, clients, table.n_users)
    _check_integer("seed", seed, 0)
    minimum = _check_integer("min_client_interactions", min_client_interactions, 0)
    held_out = _check_integer("test_per_user", test_per_user, 0)
    rng = np.random.default_rng(seed)
    keep = np.ones(len(frame), dtype=bool)
    if choice in ("natural", "grouped"):
        owner = _consecutive(np.arange(table.n_users), count)
    elif choice == "iid":
        owner = _consecutive(rng.permutation(table.n_users), count)
    elif choice == "dirichlet":
        owner = _dirichlet(table, count, _positive("alpha", alpha), minimum, rng)
    elif choice == "pathological":
        owner, keep = _pathological(table, count, classes_per_client, minimum, rng)
    else:
        owner = _size_skew(
            table, count, minimum, _positive("size_sigma", size_sigma), rng
        )
    row_client = owner[table.user_index]
    keep &= row_client >= 0
    _check_minimum(
        np.bincount(row_client[keep], minlength=count), minimum, choice, table
    )
    return _split(frame, table, row_client, keep, count, held_out)


@dataclass(frozen=True)
class HeterogeneityReport:
    """How different a partition's clients are, in size and in category mix."""

    clients: int
    users: int
    interactions: int
    size_min: int
    size_median: float
    size_max: int
    size_gini: float
    users_min: int
    users_max: int
    categories_per_client: float
    category_js_pairwise: float
    category_js_to_global: float

    def to_dict(self) -> dict[str, int | float]:
        """The report as a flat dict (for logs, JSON and assertions)."""
        return asdict(self)


def heterogeneity(clients: Sequence[Client]) -> HeterogeneityReport:
    """Size spread and category divergence of a partition.

    Sizes count train plus test interactions. ``category_js_pairwise`` is the
    mean Jensen-Shannon divergence (base 2, so within 0..1) between the
    category mixes of every pair of clients; ``category_js_to_global`` the mean
    over clients of the divergence from the pooled mix. Pairwise costs
    O(clients^2): about three seconds at five thousand clients.
    """
    if not clients:
        raise RequestError("heterogeneity needs at least one client, got none")
    categories = _category_index(clients)
    counts = np.zeros((len(clients), len(categories)), dtype=np.float64)
    users = np.zeros(len(clients), dtype=np.int64)
    for row, client in enumerate(clients):
        for part in (client.train, client.test):
            codes = _codes_in(part["category"], categories)
            counts[row] += np.bincount(codes[codes >= 0], minlength=len(categories))
        users[row] = len(np.union1d(client.train["user_id"], client.test["user_id"]))
    sizes = counts.sum(axis=1)
    shares = counts / np.maximum(sizes, 1.0)[:, None]
    pooled = counts.sum(axis=0) / max(float(counts.sum()), 1.0)
    return HeterogeneityReport(
        clients=len(clients),
        users=int(users.sum()),
        interactions=int(sizes.sum()),
        size_min=int(sizes.min()),
        size_median=float(np.median(sizes)),
        size_max=int(sizes.max()),
        size_gini=gini(sizes),
        users_min=int(users.min()),
        users_max=int(users.max()),
        categories_per_client=float((counts > 0).sum(axis=1).mean()),
        category_js_pairwise=_mean_pairwise_js(shares),
        category_js_to_global=float(_js_bits(shares, pooled[None, :]).mean()),
    )


@dataclass(frozen=True, eq=False)
class Device:
    """One FedProx Synthetic device: its data and the parameters that made it."""

    device_id: int
    train: tuple[FloatArray, IntArray]
    test: tuple[FloatArray, IntArray]
    weights: FloatArray
    bias: FloatArray
    feature_mean: FloatArray

    @property
    def n_samples(self) -> int:
        """Training plus test samples."""
        return len(self.train[1]) + len(self.test[1])


def synthetic(
    alpha: float,
    beta: float,
    *,
    devices: int = 30,
    seed: int = 0,
    iid: bool = False,
    dimension: int = 60,
    classes: int = 10,
    max_samples: int | None = None,
) -> list[Device]:
    """The devices of FedProx ``Synthetic(alpha, beta)`` or ``Synthetic-IID``.

    Device k draws u_k ~ N(0, alpha) and B_k ~ N(0, beta), where alpha and beta
    are variances; its weights W_k (classes x dimension) and bias b_k have
    entries ~ N(u_k, 1), its feature mean v_k entries ~ N(B_k, 1), and its
    samples x ~ N(v_k, Sigma) with Sigma diagonal, Sigma_jj = j^-1.2, labelled
    y = argmax softmax(W_k x + b_k). The IID variant shares one W, b with
    N(0, 1) entries and v = 0 across devices (alpha and beta are unused).
    Device k has floor(LogNormal(4, 2)) + 50 samples (``max_samples`` caps it;
    the paper has no cap), the first floor(0.9 n) for training.

    Draw order, from ``numpy.random.default_rng(seed)``: sample counts, all
    u_k, all B_k, the shared W then b (IID only), then per device v_k, W_k,
    b_k (non-IID only) and its features. The paper's generator passes alpha
    and beta to numpy as standard deviations; we follow its text (variances),
    which agrees for the named settings 0 and 1 but not for 0.5.
    """
    alpha = _non_negative("alpha", alpha)
    beta = _non_negative("beta", beta)
    count = _check_integer("devices", devices, 1)
    _check_integer("seed", seed, 0)
    dimension = _check_integer("dimension", dimension, 1)
    classes = _check_integer("classes", classes, 2)
    rng = np.random.default_rng(seed)
    samples = _sample_counts(rng, count, max_samples)
    _check_synthetic_size(samples, dimension)
    model_means = rng.normal(0.0, math.sqrt(alpha), count)
    feature_means = rng.normal(0.0, math.sqrt(beta), count)
    spread = np.arange(1, dimension + 1, dtype=np.float64) ** (
        SYNTHETIC_COVARIANCE_POWER / 2
    )
    if iid:
        shared_weights = rng.normal(0.0, 1.0, (classes, dimension))
        shared_bias = rng.normal(0.0, 1.0, classes)
    made = []
    for k in range(count):
        if iid:
            mean = np.zeros(dimension)
            weights, bias = shared_weights, shared_bias
        else:
            mean = rng.normal(feature_means[k], 1.0, dimension)
            weights = rng.normal(model_means[k], 1.0, (classes, dimension))
            bias = rng.normal(model_means[k], 1.0, classes)
        features = mean + rng.standard_normal((int(samples[k]), dimension)) * spread
        labels = np.argmax(features @ weights.T + bias, axis=1).astype(np.int64)
        cut = 9 * int(samples[k]) // 10
        made.append(
            Device(
                device_id=k,
                train=(features[:cut], labels[:cut]),
                test=(features[cut:], labels[cut:]),
                weights=weights,
                bias=bias,
                feature_mean=mean,
            )
        )
    return made


def fedprox_devices(**arguments: Any) -> list[Device]:
    """Synthetic devices from marker arguments: alpha, beta, devices, seed.

    ``partition="iid"`` asks for Synthetic-IID; other marker arguments (the
    dataset's) are ignored.
    """
    variant = arguments.get("partition")
    if variant not in (None, "iid"):
        raise RequestError(
            f"prisyn_fedprox_synthetic reads partition only to choose Synthetic-IID; "
            f"got partition={variant!r}; accepted: 'iid' or leave it out"
        )
    return synthetic(
        arguments.get("alpha", 0.0),
        arguments.get("beta", 0.0),
        devices=arguments.get("devices", 30),
        seed=arguments.get("seed", 0),
        iid=variant == "iid",
        max_samples=arguments.get("max_samples"),
    )


# -- partitioning helpers, in the order partition() uses them ---------------------


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise RequestError(
            f"cannot partition a frame without column(s) {', '.join(missing)}; "
            f"needed: {', '.join(REQUIRED_COLUMNS)}"
        )
    if frame.empty:
        raise RequestError("cannot partition an empty frame")


def _strategy(value: object) -> str:
    if value not in STRATEGIES:
        raise RequestError(
            f"partition={value!r} is not a partitioning strategy; accepted: "
            f"{', '.join(STRATEGIES)}"
        )
    return str(value)


@dataclass(frozen=True)
class _UserTable:
    """Users of a frame (ascending ids) and their interaction counts by category."""

    user_ids: IntArray
    user_index: npt.NDArray[np.intp]
    category_codes: npt.NDArray[np.intp]
    by_category: IntArray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _UserTable:
        user_ids, user_index = np.unique(
            frame["user_id"].to_numpy(dtype=np.int64), return_inverse=True
        )
        codes, n_categories = _category_codes(frame["category"])
        if (codes < 0).any():
            raise RequestError(
                "cannot partition: the category column has missing values"
            )
        by_category = np.zeros((len(user_ids), n_categories), dtype=np.int64)
        np.add.at(by_category, (user_index, codes), 1)
        return cls(user_ids, user_index.astype(np.intp), codes, by_category)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def activity(self) -> IntArray:
        return np.asarray(self.by_category.sum(axis=1), dtype=np.int64)

    @property
    def favourite(self) -> npt.NDArray[np.intp]:
        return np.asarray(np.argmax(self.by_category, axis=1), dtype=np.intp)


def _client_count(strategy: str, clients: object, n_users: int) -> int:
    if strategy == "natural":
        if clients is not None and clients != n_users:
            raise RequestError(
                f"partition='natural' makes one client per user, so clients must "
                f"be left out or equal the {n_users} users; got clients={clients!r}"
            )
        return n_users
    count = _check_integer("clients", clients, 1)
    if count > n_users:
        raise RequestError(
            f"clients={count} is more than the {n_users} users in the dataset; "
            "every client needs at least one user: ask for fewer clients or more "
            "n_users"
        )
    return count


def _consecutive(order: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.intp]:
    """Owner per user: ``order`` cut into ``count`` runs of near-equal length."""
    owner = np.empty(len(order), dtype=np.intp)
    for client, run in enumerate(np.array_split(order, count)):
        owner[run] = client
    return owner


def _dirichlet(
    table: _UserTable,
    count: int,
    alpha: float,
    minimum: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.intp]:
    activity = table.activity
    favourite = table.favourite
    classes = [np.flatnonzero(favourite == c) for c in np.unique(favourite)]
    for _ in range(DIRICHLET_ATTEMPTS):
        owner = np.empty(table.n_users, dtype=np.intp)
        for members in classes:
            dealt = rng.permutation(members)
            shares = rng.dirichlet(np.full(count, alpha))
            sizes = _largest_remainder(len(dealt), shares)
            owner[dealt] = np.repeat(np.arange(count), sizes)
        loads = np.bincount(owner, weights=activity, minlength=count)
        if loads.min() >= max(minimum, 1):
            break
    return owner


def _largest_remainder(total: int, shares: FloatArray) -> IntArray:
    """Integers summing to ``total`` in proportion to ``shares``."""
    exact = total * shares / shares.sum()
    whole = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(shares)), -(exact - whole)))
    whole[order[: total - int(whole.sum())]] += 1
    return np.asarray(whole, dtype=np.int64)


def _pathological(
    table: _UserTable,
    count: int,
    classes_per_client: object,
    minimum: int,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    present = np.flatnonzero(table.by_category.sum(axis=0) > 0)
    per_client = _check_integer("classes_per_client", classes_per_client, 1)
    if per_client > len(present):
        raise RequestError(
            f"classes_per_client={per_client} is more than the {len(present)} "
            f"categories in the dataset; accepted: 1 to {len(present)}"
        )
    order = rng.permutation(present)
    holds = np.zeros((count, table.by_category.shape[1]), dtype=bool)
    for client in range(count):
        slots = (client * per_client + np.arange(per_client)) % len(present)
        holds[client, order[slots]] = True
    kept = table.by_category @ holds.T.astype(np.int64)
    ties = rng.random(table.n_users)
    owner = np.full(table.n_users, -1, dtype=np.intp)
    load = np.zeros(count, dtype=np.int64)
    _fill_to_minimum(kept, ties, owner, load, max(minimum, 1))
    favourite = table.favourite
    for user in np.lexsort((ties, -table.activity)):
        if owner[user] >= 0:
            continue
        candidates = np.flatnonzero(holds[:, favourite[user]])
        if not len(candidates):
            if kept[user].max() == 0:
                continue
            candidates = np.flatnonzero(kept[user] == kept[user].max())
        chosen = int(candidates[np.argmin(load[candidates])])
        owner[user] = chosen
        load[chosen] += kept[user, chosen]
    row_owner = owner[table.user_index]
    keep = (row_owner >= 0) & holds[np.maximum(row_owner, 0), table.category_codes]
    return owner, keep


def _fill_to_minimum(
    kept: IntArray,
    ties: FloatArray,
    owner: npt.NDArray[np.intp],
    load: IntArray,
    target: int,
) -> None:
    """Let the emptiest client below ``target`` take the free user it keeps most of."""
    fillable = np.ones(len(load), dtype=bool)
    while True:
        needy = np.flatnonzero(fillable & (load < target))
        if not len(needy):
            return
        client = int(needy[np.argmin(load[needy])])
        scores = np.where(owner < 0, kept[:, client] + 0.5 * ties, -1.0)
        user = int(np.argmax(scores))
        if scores[user] < 1:
            fillable[client] = False
            continue
        owner[user] = client
        load[client] += kept[user, client]


def _size_skew(
    table: _UserTable,
    count: int,
    minimum: int,
    sigma: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.intp]:
    activity = table.activity
    total = int(activity.sum())
    weights = rng.lognormal(0.0, sigma, count)
    floor = minimum if total >= minimum * count else 0
    targets = floor + (total - floor * count) * weights / weights.sum()
    owner = np.empty(table.n_users, dtype=np.intp)
    load = np.zeros(count, dtype=np.float64)
    for user in np.lexsort((rng.random(table.n_users), -activity)):
        chosen = int(np.argmax(targets - load))
        owner[user] = chosen
        load[chosen] += activity[user]
    return owner


def _check_minimum(
    sizes: IntArray, minimum: int, strategy: str, table: _UserTable
) -> None:
    short = np.flatnonzero(sizes < max(minimum, 1))
    if not len(short):
        return
    worst = int(short[np.argmin(sizes[short])])
    others = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
    raise RequestError(
        f"client {worst} got {int(sizes[worst])} interactions, fewer than "
        f"min_client_interactions={minimum}{others}; partition={strategy!r} of "
        f"{int(table.activity.sum())} interactions of {table.n_users} users into "
        f"{len(sizes)} clients. Ask for fewer clients, more n_interactions, a "
        "larger alpha (dirichlet), or a lower min_client_interactions"
    )


def _category_codes(column: pd.Series[Any]) -> tuple[npt.NDArray[np.intp], int]:
    """Category code per row (-1 for missing) and the number of categories."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        return codes.astype(np.intp), len(column.dtype.categories)
    codes, uniques = pd.factorize(column, sort=True)
    return np.asarray(codes, dtype=np.intp), len(uniques)


def _time_keys(column: pd.Series[Any]) -> IntArray:
    """Sortable integers for timestamps: datetimes (any zone) or numbers."""
    if pd.api.types.is_numeric_dtype(column.dtype):
        return np.asarray(column.to_numpy(), dtype=np.int64)
    instants = column.to_numpy(dtype="datetime64[ns]")
    return instants.view(np.int64)


def _split(
    frame: pd.DataFrame,
    table: _UserTable,
    row_client: npt.NDArray[np.intp],
    keep: npt.NDArray[np.bool_],
    count: int,
    held_out: int,
) -> list[Client]:
    rows = np.flatnonzero(keep)
    times = _time_keys(frame["timestamp"])[rows]
    items = frame["item_id"].to_numpy(dtype=np.int64)[rows]
    rows = rows[np.lexsort((items, times, table.user_index[rows]))]
    users = table.user_index[rows]
    starts = np.searchsorted(users, users, side="left")
    ends = np.searchsorted(users, users, side="right")
    from_end = ends - np.arange(len(rows))
    is_test = (from_end <= held_out) & (ends - starts > held_out)
    rows_client = row_client[rows]
    by_client = np.argsort(rows_client, kind="stable")
    bounds = np.searchsorted(rows_client[by_client], np.arange(count + 1))
    made = []
    for client in range(count):
        part = by_client[bounds[client] : bounds[client + 1]]
        test = is_test[part]
        made.append(
            Client(
                client_id=client,
                train=frame.iloc[rows[part[~test]]],
                test=frame.iloc[rows[part[test]]],
            )
        )
    return made


# -- heterogeneity helpers ----------------------------------------------------------


def _category_index(clients: Sequence[Client]) -> pd.Index[Any]:
    """Every category of a partition: the shared categorical's, else those seen."""
    dtype = clients[0].train["category"].dtype
    if isinstance(dtype, pd.CategoricalDtype):
        names = list(dtype.categories)
    else:
        seen: set[Any] = set()
        for client in clients:
            for part in (client.train, client.test):
                seen.update(part["category"].dropna().unique())
        names = sorted(seen, key=str)
    index: pd.Index[Any] = pd.Index(names)
    return index


def _codes_in(
    column: pd.Series[Any], categories: pd.Index[Any]
) -> npt.NDArray[np.intp]:
    if isinstance(column.dtype, pd.CategoricalDtype) and column.dtype.categories.equals(
        categories
    ):
        return column.cat.codes.to_numpy().astype(np.intp)
    values: pd.Index[Any] = pd.Index(column.astype("object"))
    return np.asarray(categories.get_indexer(values), dtype=np.intp)


def _js_bits(p: FloatArray, q: FloatArray) -> FloatArray:
    """Row-wise Jensen-Shannon divergence in bits: H(middle) - mean of H(p), H(q)."""
    middle = 0.5 * (p + q)
    spread = _entropy_bits(middle) - 0.5 * (_entropy_bits(p) + _entropy_bits(q))
    return np.clip(spread, 0.0, 1.0)


def _entropy_bits(shares: FloatArray) -> FloatArray:
    logs = np.log2(np.where(shares > 0, shares, 1.0))
    return np.asarray(-np.sum(shares * logs, axis=-1), dtype=np.float64)


def _mean_pairwise_js(shares: FloatArray) -> float:
    n = len(shares)
    if n < 2:
        return 0.0
    entropies = _entropy_bits(shares)
    total = 0.0
    for i in range(n - 1):
        middle = 0.5 * (shares[i + 1 :] + shares[i])
        spread = _entropy_bits(middle) - 0.5 * (entropies[i + 1 :] + entropies[i])
        total += float(np.clip(spread, 0.0, 1.0).sum())
    return total / (n * (n - 1) / 2)


# -- FedProx Synthetic helpers ------------------------------------------------------


def _sample_counts(
    rng: np.random.Generator, count: int, max_samples: int | None
) -> IntArray:
    drawn = rng.lognormal(SYNTHETIC_LOG_MEAN, SYNTHETIC_LOG_SIGMA, count)
    samples = np.floor(drawn).astype(np.int64) + SYNTHETIC_MIN_SAMPLES
    if max_samples is not None:
        cap = _check_integer("max_samples", max_samples, SYNTHETIC_MIN_SAMPLES)
        samples = np.minimum(samples, cap)
    return samples


def _check_synthetic_size(samples: IntArray, dimension: int) -> None:
    values = int(samples.sum()) * dimension
    if values > SYNTHETIC_MAX_VALUES:
        largest = int(samples.max())
        raise RequestError(
            f"this draw of FedProx Synthetic has {int(samples.sum())} samples "
            f"(largest device {largest}), {values} feature values, over the "
            f"{SYNTHETIC_MAX_VALUES} limit; pass max_samples, fewer devices or "
            "another seed"
        )


# -- argument checks ----------------------------------------------------------------


def _check_integer(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(f"{name} must be an integer >= {low}, got {value!r}")
    if int(value) < low:
        raise RequestError(f"{name}={value} is out of range; accepted: >= {low}")
    return int(value)


def _positive(name: str, value: object) -> float:
    number = _real(name, value)
    if number <= 0:
        raise RequestError(f"{name}={value!r} must be a positive number")
    return number


def _non_negative(name: str, value: object) -> float:
    number = _real(name, value)
    if number < 0:
        raise RequestError(f"{name}={value!r} must be zero or a positive number")
    return number


def _real(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
    ):
        raise RequestError(f"{name} must be a finite number, got {value!r}")
    return float(value)
