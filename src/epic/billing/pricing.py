"""Prices: what a task reserves on a queue and what that costs, in decimal arithmetic only.

The rounding rule, stated once: every item is computed exactly in the base currency,
converted to the display currency, and then rounded half-up to the penny, once; a total is
the sum of its rounded items, so that what is shown always adds up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from epic.catalog.models import ApplicationVersion, Queue
from epic.software.base import TaskSpec

CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
PENNY = Decimal("0.01")
ZERO = Decimal(0)


def to_penny(amount: Decimal) -> Decimal:
    """The one rounding rule: half-up to the penny."""
    return amount.quantize(PENNY, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Reservation:
    """What a task holds on a queue while it runs."""

    nodes: int
    cores: int


@dataclass(frozen=True)
class Rates:
    """Everything a price depends on besides the resources and the hours."""

    queue: Queue
    version: ApplicationVersion | None
    discount_rate: Decimal
    service_charge_rate: Decimal
    tax_rate: Decimal
    exchange_rate: Decimal
    currency: str


@dataclass(frozen=True)
class TaskPrice:
    """The itemised price of one task (or a total) on one queue, in one currency."""

    reference: str
    queue_code: str
    currency: str
    iaas_cost: Decimal
    software_cost: Decimal = ZERO
    service_charge: Decimal = ZERO
    discount: Decimal = ZERO
    tax: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        """The sum of the rounded items."""
        return self.iaas_cost + self.software_cost + self.service_charge - self.discount + self.tax


def reserve(queue: Queue, task: TaskSpec) -> Reservation | str:
    """The nodes and cores a task reserves on a queue, or the reason the queue cannot run it."""
    threads = queue.threads_per_core if task.hyperthreading else 1
    count = task.partitions
    if task.task_distribution == "core":
        nodes = math.ceil(count / (queue.cores_per_node * threads))
        cores = math.ceil(count / threads)
    elif task.task_distribution == "socket":
        nodes, cores = math.ceil(count / queue.cpus), count * queue.cores_per_cpu
    elif task.task_distribution == "node":
        nodes, cores = count, count * queue.cores_per_node
    else:
        if queue.gpus_per_node == 0:
            return f"{queue.queue_code} has no devices."
        nodes = math.ceil(count / (queue.gpus_per_node * task.tasks_per_device))
        cores = nodes * queue.cores_per_node
    return _fits(queue, task, Reservation(nodes, cores))


def _fits(queue: Queue, task: TaskSpec, reservation: Reservation) -> Reservation | str:
    """The reservation, or why the queue's limits refuse it."""
    if reservation.nodes > queue.node_count:
        return (
            f"{task.reference} needs {reservation.nodes} nodes; {queue.queue_code} has "
            f"{queue.node_count}."
        )
    if reservation.cores > queue.max_allocation:
        return (
            f"{task.reference} needs {reservation.cores} cores; {queue.queue_code} allows "
            f"{queue.max_allocation}."
        )
    if task.runtime > queue.max_runtime:
        return (
            f"{task.reference} asks for {task.runtime} h; {queue.queue_code} allows "
            f"{queue.max_runtime} h."
        )
    return reservation


def base_amounts(rates: Rates, reservation: Reservation, hours: Decimal) -> dict[str, Decimal]:
    """The exact, unrounded items in the base currency."""
    queue = rates.queue
    if queue.node_hour_price is not None:
        iaas = Decimal(reservation.nodes) * hours * queue.node_hour_price
    else:
        iaas = Decimal(reservation.cores) * hours * queue.core_hour_price
    software_rate = rates.version.software_core_hour_price if rates.version else ZERO
    software = Decimal(reservation.cores) * hours * software_rate
    service = (iaas + software) * rates.service_charge_rate
    discount = (iaas + software + service) * rates.discount_rate
    tax = (iaas + software + service - discount) * rates.tax_rate
    return {
        "iaas_cost": iaas,
        "software_cost": software,
        "service_charge": service,
        "discount": discount,
        "tax": tax,
    }


def price(rates: Rates, reference: str, reservation: Reservation, hours: Decimal) -> TaskPrice:
    """The price of holding a reservation for some hours, in the display currency."""
    items = base_amounts(rates, reservation, hours)
    return TaskPrice(
        reference=reference,
        queue_code=rates.queue.queue_code,
        currency=rates.currency,
        **{name: to_penny(amount * rates.exchange_rate) for name, amount in items.items()},
    )


def add_up(prices: list[TaskPrice], reference: str, queue_code: str, currency: str) -> TaskPrice:
    """The itemised sum of several prices on one queue."""
    return TaskPrice(
        reference=reference,
        queue_code=queue_code,
        currency=currency,
        iaas_cost=sum((item.iaas_cost for item in prices), ZERO),
        software_cost=sum((item.software_cost for item in prices), ZERO),
        service_charge=sum((item.service_charge for item in prices), ZERO),
        discount=sum((item.discount for item in prices), ZERO),
        tax=sum((item.tax for item in prices), ZERO),
    )


def money(amount: Decimal, currency: str = "GBP") -> dict:
    """A money object as the API shows it; the amount is a decimal string, exact to the penny."""
    return {
        "amount": str(to_penny(amount)),
        "currency": currency,
        "currency_symbol": CURRENCY_SYMBOLS[currency],
    }


def money_text(amount: Decimal, currency: str = "GBP") -> str:
    """A money amount as display text, such as £12.50."""
    return f"{CURRENCY_SYMBOLS[currency]}{to_penny(amount)}"
