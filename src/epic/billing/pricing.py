"""Price a job's tasks on a queue from the catalog's rates, in decimal arithmetic only."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from epic.catalog.models import Queue

CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
PENNY = Decimal("0.01")


@dataclass(frozen=True)
class TaskPrice:
    """The itemised price of one task on one queue."""

    reference: str
    queue_code: str
    iaas_cost: Decimal
    software_cost: Decimal = Decimal(0)
    service_charge: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        """What the task costs at most: every item, rounded once, to the penny."""
        total = self.iaas_cost + self.software_cost + self.service_charge - self.discount
        return (total + self.tax).quantize(PENNY, rounding=ROUND_HALF_UP)


def price_task(queue: Queue, reference: str, cores: int, runtime_hours: int) -> TaskPrice:
    """Price `cores` reserved for `runtime_hours` on a queue at its core-hour rate."""
    iaas = Decimal(cores) * Decimal(runtime_hours) * queue.core_hour_price
    return TaskPrice(reference=reference, queue_code=queue.queue_code, iaas_cost=iaas)


def money(amount: Decimal, currency: str = "GBP") -> dict:
    """A money object as the API shows it; the amount is a decimal string, exact to the penny."""
    return {
        "amount": str(amount.quantize(PENNY, rounding=ROUND_HALF_UP)),
        "currency": currency,
        "currency_symbol": CURRENCY_SYMBOLS[currency],
    }


def money_text(amount: Decimal, currency: str = "GBP") -> str:
    """A money amount as display text, such as £12.50."""
    return f"{CURRENCY_SYMBOLS[currency]}{amount.quantize(PENNY, rounding=ROUND_HALF_UP)}"
