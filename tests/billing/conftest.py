"""Fixtures of the money tests: a catalog of round prices, team roles and billing settings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from epic.accounts.models import Role, Team
from epic.billing.models import TeamBilling
from epic.catalog.loader import apply_catalog
from tests.conftest import client_for

# The live server of the end-to-end tests, for the budget race over HTTP.
from tests.e2e.conftest import server as server

# Round prices, so that every expected amount can be worked out by hand.
PRICED_CATALOG = {
    "clusters": [{"name": "priced", "backend": "local"}],
    "queues": [
        {
            # 2 sockets x 4 cores, 2 threads per core, 4 nodes: 8 cores a node, 32 in all.
            "queue_code": "cores",
            "cluster": "priced",
            "cpus": 2,
            "cores_per_cpu": 4,
            "threads_per_core": 2,
            "node_count": 4,
            "max_allocation": 32,
            "max_runtime": 24,
            "core_hour_price": "1.00",
        },
        {
            # Billed by the node: 2 nodes of 2 sockets x 4 cores, 10.00 a node-hour.
            "queue_code": "nodes",
            "cluster": "priced",
            "cpus": 2,
            "cores_per_cpu": 4,
            "node_count": 2,
            "max_allocation": 16,
            "max_runtime": 24,
            "node_hour_price": "10.00",
        },
        {
            # 2 nodes of 8 cores and 4 GPUs each, 0.50 a core-hour.
            "queue_code": "gpus",
            "cluster": "priced",
            "cpus": 1,
            "cores_per_cpu": 8,
            "node_count": 2,
            "max_allocation": 16,
            "max_runtime": 24,
            "core_hour_price": "0.50",
            "gpus_per_node": 4,
        },
    ],
    "applications": [
        {
            "product_name": "Priced script",
            "versions": [
                {
                    "app_code": "priced",
                    "version": "1",
                    "driver": "script",
                    "software_core_hour_price": "0.25",
                    "queues": ["cores", "nodes", "gpus"],
                }
            ],
        }
    ],
    "pricing": {
        "service_charge_rate": "0.10",
        "tax_rate": "0.20",
        "exchange_rates": {"GBP": "1", "EUR": "1.25", "USD": "1.50"},
    },
}


@pytest.fixture
def priced_catalog(catalog):
    """The round-price queues, application and pricing policy, beside the default catalog."""
    apply_catalog(PRICED_CATALOG)


def set_team_billing(team_name: str, **fields) -> TeamBilling:
    """Change a team's billing settings and return them."""
    billing = TeamBilling.of(Team.objects.get(name=team_name))
    for name, value in fields.items():
        setattr(billing, name, value)
    billing.save()
    return billing


@pytest.fixture
def acme_discount(alice) -> TeamBilling:
    """Team acme pays 5% less."""
    return set_team_billing("acme", discount_rate=Decimal("0.05"))


@pytest.fixture
def carol(alice):
    """An admin of team acme."""
    return client_for("carol", "acme", Role.ADMIN)


@pytest.fixture
def owen(alice):
    """An owner of team acme."""
    return client_for("owen", "acme", Role.OWNER)


@pytest.fixture
def case(alice, upload) -> str:
    """Alice's input folder epic://case/ with a script that ends at once."""
    upload(alice.user, "case/run.sh", "true\n")
    return "case"
