"""FedAvg and FedProx on the FedProx paper's Synthetic(alpha, beta) devices."""

import numpy as np
import pytest

from federated import SoftmaxRegression, fedavg, fedprox

# The paper's setting: 30 devices, 10 sampled per round, batches of 10.
SETTINGS = {
    "rounds": 10,
    "epochs": 1,
    "learning_rate": 0.01,
    "seed": 0,
    "clients_per_round": 10,
}


@pytest.mark.prisyn(alpha=0.5, beta=0.5, devices=30, seed=0)
def test_fedprox_with_mu_zero_is_fedavg_exactly(prisyn_fedprox_synthetic):
    averaged = fedavg(SoftmaxRegression(prisyn_fedprox_synthetic), **SETTINGS)
    proximal = fedprox(SoftmaxRegression(prisyn_fedprox_synthetic), mu=0.0, **SETTINGS)

    assert averaged.losses == proximal.losses
    for name in averaged.params:
        assert np.array_equal(averaged.params[name], proximal.params[name])


@pytest.mark.parametrize("mu", [None, 1.0])
@pytest.mark.parametrize(
    "setting",
    [
        pytest.param("(0,0)", marks=pytest.mark.prisyn(alpha=0, beta=0)),
        pytest.param("(1,1)", marks=pytest.mark.prisyn(alpha=1, beta=1, seed=1)),
        pytest.param("iid", marks=pytest.mark.prisyn(partition="iid")),
    ],
)
def test_loss_falls_and_accuracy_beats_chance(prisyn_fedprox_synthetic, setting, mu):
    task = SoftmaxRegression(prisyn_fedprox_synthetic)

    if mu is None:
        history = fedavg(task, **SETTINGS)
    else:
        history = fedprox(task, mu=mu, **SETTINGS)

    assert history.losses[-1] < 0.75 * history.losses[0]
    assert task.accuracy(history.params) > 0.3  # chance is 0.1


@pytest.mark.prisyn(alpha=1, beta=1, devices=30, seed=1)
def test_proximal_term_reduces_local_drift(prisyn_fedprox_synthetic):
    def drift(mu):
        task = SoftmaxRegression(prisyn_fedprox_synthetic)
        return np.mean(fedprox(task, mu=mu, **SETTINGS).drift)

    assert drift(1.0) < drift(0.0)
