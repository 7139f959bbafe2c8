"""Federated training in numpy: FedAvg and FedProx over prisyn clients or devices."""

from federated.models import FederatedMatrixFactorization, SoftmaxRegression
from federated.training import History, Task, fedavg, fedprox

__all__ = [
    "FederatedMatrixFactorization",
    "History",
    "SoftmaxRegression",
    "Task",
    "fedavg",
    "fedprox",
]
