"""Money: prices, quotes, the spend ledger and budgets."""

from django.apps import AppConfig


class BillingConfig(AppConfig):
    """The billing app."""

    name = "epic.billing"
    label = "billing"
