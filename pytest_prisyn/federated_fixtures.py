"""The federated fixtures; plugin.py imports them, numpy and pandas load on use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_prisyn.engine import Engine
    from pytest_prisyn.federated import Client, Device


@pytest.fixture
def prisyn_clients(request: pytest.FixtureRequest, prisyn: Engine) -> list[Client]:
    """Federated clients (train/test per user) of the closest ``prisyn`` mark's data."""
    from pytest_prisyn import federated, plugin

    arguments = plugin.marker_arguments(request)
    return plugin._guarded(federated.clients, prisyn, **arguments)


@pytest.fixture
def prisyn_fedprox_synthetic(request: pytest.FixtureRequest) -> list[Device]:
    """FedProx ``Synthetic(alpha, beta)`` devices for the closest ``prisyn`` mark."""
    from pytest_prisyn import federated, plugin

    arguments = plugin.marker_arguments(request)
    return plugin._guarded(federated.fedprox_devices, **arguments)
