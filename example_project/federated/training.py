"""The federated loop: FedAvg, and FedProx with its proximal term mu.

Each round the server samples clients, sends them the global parameters, lets
each run a few epochs of local SGD and averages what comes back, weighted by
the clients' training sizes (McMahan et al. 2017). FedProx (Li et al. 2018)
adds mu/2 * ||w - w_global||^2 to every local objective, which keeps local
models near the global one when clients differ. FedProx with mu=0 and FedAvg
run the same arithmetic, so they give bit-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Params = dict[str, np.ndarray]


class Task(Protocol):
    """A model and its clients' data, as the federated loop sees them."""

    n_clients: int

    def initial(self, rng: np.random.Generator) -> Params:
        """The global parameters before the first round."""

    def weight(self, client: int) -> float:
        """The client's share in the average: its number of training rows."""

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
        """The client's parameters after local training from ``params``."""

    def loss(self, params: Params) -> float:
        """Mean training loss over every client's rows."""


@dataclass
class History:
    """What a training run produced: final parameters and per-round measures."""

    params: Params
    losses: list[float] = field(default_factory=list)
    drift: list[float] = field(default_factory=list)


def fedavg(
    task: Task,
    *,
    rounds: int,
    epochs: int,
    learning_rate: float,
    seed: int,
    clients_per_round: int | None = None,
) -> History:
    """Federated averaging: local SGD, then the size-weighted mean."""
    return _train(task, None, rounds, epochs, learning_rate, seed, clients_per_round)


def fedprox(
    task: Task,
    *,
    mu: float,
    rounds: int,
    epochs: int,
    learning_rate: float,
    seed: int,
    clients_per_round: int | None = None,
) -> History:
    """FedProx: FedAvg whose local objectives carry mu/2 * ||w - w_global||^2."""
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    return _train(
        task, float(mu), rounds, epochs, learning_rate, seed, clients_per_round
    )


def sgd_step(
    params: Params,
    gradients: Params,
    *,
    anchor: Params,
    learning_rate: float,
    mu: float | None,
) -> None:
    """One SGD step on the global parameters, with FedProx's proximal pull."""
    for name, gradient in gradients.items():
        if mu is not None:
            gradient = gradient + mu * (params[name] - anchor[name])
        params[name] = params[name] - learning_rate * gradient


def _train(
    task: Task,
    mu: float | None,
    rounds: int,
    epochs: int,
    learning_rate: float,
    seed: int,
    clients_per_round: int | None,
) -> History:
    params = task.initial(np.random.default_rng([seed, 0]))
    history = History(params, losses=[task.loss(params)])
    per_round = clients_per_round or task.n_clients
    for round_number in range(1, rounds + 1):
        chooser = np.random.default_rng([seed, round_number])
        chosen = np.sort(chooser.choice(task.n_clients, per_round, replace=False))
        updates, weights = [], []
        for client in chosen:
            local = task.local_update(
                int(client),
                {name: value.copy() for name, value in params.items()},
                epochs=epochs,
                learning_rate=learning_rate,
                mu=mu,
                rng=np.random.default_rng([seed, round_number, int(client)]),
            )
            updates.append(local)
            weights.append(task.weight(int(client)))
        history.drift.append(_mean_distance(updates, params))
        params = _weighted_mean(updates, np.asarray(weights, dtype=float))
        history.params = params
        history.losses.append(task.loss(params))
    return history


def _weighted_mean(updates: list[Params], weights: np.ndarray) -> Params:
    shares = weights / weights.sum()
    return {
        name: sum(
            (
                share * update[name]
                for share, update in zip(shares, updates, strict=True)
            ),
            start=np.zeros_like(updates[0][name]),
        )
        for name in updates[0]
    }


def _mean_distance(updates: list[Params], anchor: Params) -> float:
    """Mean Euclidean distance of the local results from the round's start."""
    distances = [
        np.sqrt(sum(float(np.sum((u[name] - anchor[name]) ** 2)) for name in anchor))
        for u in updates
    ]
    return float(np.mean(distances))
