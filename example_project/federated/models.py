"""Two federated tasks: matrix factorisation over prisyn clients, softmax regression
over FedProx Synthetic devices.

Both keep what never leaves a client (its rows, and for matrix factorisation its
users' factors) inside the task; only the global parameters travel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from federated.training import Params, sgd_step

GLOBAL_MEAN_START = 3.0  # the middle of a 1-5 star scale: no data needed


class FederatedMatrixFactorization:
    """Biased MF: item factors, item biases and the mean are global; users stay local.

    The prediction for user u and item i is mean + b_u + b_i + p_u . q_i; each
    client trains its own users' p_u and b_u and never sends them.
    """

    def __init__(
        self,
        clients: Sequence[Any],
        *,
        factors: int = 8,
        regularization: float = 0.02,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        self.n_clients = len(clients)
        self.factors = factors
        self.regularization = regularization
        self.batch_size = batch_size
        self.n_items = 1 + max(
            int(part["item_id"].max())
            for client in clients
            for part in (client.train, client.test)
            if len(part)
        )
        self.train = [_Rows.of(c.train, c.user_ids) for c in clients]
        self.test = [_Rows.of(c.test, c.user_ids) for c in clients]
        self.user_factors = []
        self.user_bias = []
        for number, client in enumerate(clients):
            rng = np.random.default_rng([seed, number])
            users = len(client.user_ids)
            self.user_factors.append(rng.normal(0.0, 0.1, (users, factors)))
            self.user_bias.append(np.zeros(users))

    def initial(self, rng: np.random.Generator) -> Params:
        """Small random item factors, zero biases, mean at mid-scale."""
        return {
            "item_factors": rng.normal(0.0, 0.1, (self.n_items, self.factors)),
            "item_bias": np.zeros(self.n_items),
            "mean": np.array(GLOBAL_MEAN_START),
        }

    def weight(self, client: int) -> float:
        """Training rows of the client."""
        return float(len(self.train[client].ratings))

    def local_update(
        self,
        client: int,
        params: Params,
        *,
        epochs: int,
        learning_rate: float,
        mu: float | None,
        rng: np.random.Generator,
    ) -> Params:
        """Mini-batch SGD on the client's rows; its users' factors change in place."""
        anchor = {name: value.copy() for name, value in params.items()}
        rows = self.train[client]
        users_p, users_b = self.user_factors[client], self.user_bias[client]
        reg = self.regularization
        for _ in range(epochs):
            order = rng.permutation(len(rows.ratings))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                u, i = rows.users[batch], rows.items[batch]
                p, q = users_p[u], params["item_factors"][i]
                error = self._predict(params, client, u, i) - rows.ratings[batch]
                n = len(batch)
                item_grad = np.zeros_like(params["item_factors"])
                np.add.at(item_grad, i, (error[:, None] * p + reg * q) / n)
                bias_grad = np.zeros_like(params["item_bias"])
                np.add.at(bias_grad, i, error / n)
                user_grad = np.zeros_like(users_p)
                np.add.at(user_grad, u, (error[:, None] * q + reg * p) / n)
                user_bias_grad = np.zeros_like(users_b)
                np.add.at(user_bias_grad, u, error / n)
                users_p -= learning_rate * user_grad
                users_b -= learning_rate * user_bias_grad
                sgd_step(
                    params,
                    {
                        "item_factors": item_grad,
                        "item_bias": bias_grad,
                        "mean": np.array(error.mean()),
                    },
                    anchor=anchor,
                    learning_rate=learning_rate,
                    mu=mu,
                )
        return params

    def loss(self, params: Params) -> float:
        """Mean squared error over every client's training rows."""
        return _mse(self, params, self.train)

    def test_rmse(self, params: Params) -> float:
        """Root mean squared error on the held-out (latest) interactions."""
        return float(np.sqrt(_mse(self, params, self.test)))

    def _predict(
        self, params: Params, client: int, users: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        factors = self.user_factors[client][users]
        return (
            params["mean"]
            + self.user_bias[client][users]
            + params["item_bias"][items]
            + np.sum(factors * params["item_factors"][items], axis=1)
        )


class SoftmaxRegression:
    """Multinomial logistic regression shared by every device (FedProx's model)."""

    def __init__(self, devices: Sequence[Any], *, batch_size: int = 10) -> None:
        self.n_clients = len(devices)
        self.batch_size = batch_size
        self.devices = list(devices)
        self.dimension = devices[0].train[0].shape[1]
        self.classes = devices[0].weights.shape[0]

    def initial(self, rng: np.random.Generator) -> Params:
        """Zero weights: every class equally likely."""
        return {
            "weights": np.zeros((self.classes, self.dimension)),
            "bias": np.zeros(self.classes),
        }

    def weight(self, client: int) -> float:
        """Training samples of the device."""
        return float(len(self.devices[client].train[1]))

    def local_update(
        self,
        client: int,
        params: Params,
        *,
        epochs: int,
        learning_rate: float,
        mu: float | None,
        rng: np.random.Generator,
    ) -> Params:
        """Mini-batch SGD on the device's training samples."""
        anchor = {name: value.copy() for name, value in params.items()}
        features, labels = self.devices[client].train
        for _ in range(epochs):
            order = rng.permutation(len(labels))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                x, y = features[batch], labels[batch]
                residual = _softmax(x @ params["weights"].T + params["bias"])
                residual[np.arange(len(y)), y] -= 1.0
                sgd_step(
                    params,
                    {
                        "weights": residual.T @ x / len(y),
                        "bias": residual.mean(axis=0),
                    },
                    anchor=anchor,
                    learning_rate=learning_rate,
                    mu=mu,
                )
        return params

    def loss(self, params: Params) -> float:
        """Mean cross-entropy over every device's training samples."""
        total, count = 0.0, 0
        for device in self.devices:
            x, y = device.train
            logits = x @ params["weights"].T + params["bias"]
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(shifted).sum(axis=1))
            total += float(np.sum(log_norm - shifted[np.arange(len(y)), y]))
            count += len(y)
        return total / count

    def accuracy(self, params: Params) -> float:
        """Share of test samples, over all devices, whose class is predicted."""
        hits, count = 0, 0
        for device in self.devices:
            x, y = device.test
            predicted = np.argmax(x @ params["weights"].T + params["bias"], axis=1)
            hits += int(np.sum(predicted == y))
            count += len(y)
        return hits / count


class _Rows:
    """A client's interactions as arrays: local user index, item id, rating."""

    def __init__(
        self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
    ) -> None:
        self.users, self.items, self.ratings = users, items, ratings

    @classmethod
    def of(cls, frame: Any, user_ids: Sequence[int]) -> _Rows:
        users = np.searchsorted(np.asarray(user_ids), frame["user_id"].to_numpy())
        return cls(
            users,
            frame["item_id"].to_numpy(dtype=np.int64),
            frame["rating"].to_numpy(dtype=np.float64),
        )


def _mse(
    task: FederatedMatrixFactorization, params: Params, parts: list[_Rows]
) -> float:
    total, count = 0.0, 0
    for client, rows in enumerate(parts):
        if not len(rows.ratings):
            continue
        error = task._predict(params, client, rows.users, rows.items) - rows.ratings
        total += float(np.sum(error**2))
        count += len(error)
    return total / count


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
