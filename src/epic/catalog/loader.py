"""Load the catalog (clusters, queues, applications) from a YAML file; loading is idempotent."""

import logging
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from epic.catalog.models import (
    Application,
    ApplicationVersion,
    Backend,
    Cluster,
    DesktopNodeType,
    Queue,
)
from epic.software.registry import driver_names

logger = logging.getLogger(__name__)

QUEUE_FIELDS = (
    "name",
    "description",
    "partition",
    "max_runtime",
    "max_allocation",
    "cpus",
    "cores_per_cpu",
    "threads_per_core",
    "memory",
    "cpu_generation",
    "node_count",
    "maintenance_mode",
    "core_hour_price",
    "node_hour_price",
    "gpus_per_node",
)


CURRENCIES = ("GBP", "EUR", "USD")
VERSION_SCRIPTS = ("start_script", "stop_script", "environment_script")


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry and the problem."""


def load_catalog_file(path: Path) -> dict[str, int]:
    """Read a YAML catalog file and apply it; return how many entries of each kind it holds."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {error}") from error
    return apply_catalog(document or {})


@transaction.atomic
def apply_catalog(document: dict[str, Any]) -> dict[str, int]:
    """Create or update every entry of a catalog document, keyed by name and code."""
    if not isinstance(document, dict):
        raise CatalogError("The catalog must be a mapping with clusters, queues, applications.")

    for entry in _entries(document, "clusters"):
        _apply_cluster(entry)
    for entry in _entries(document, "queues"):
        _apply_queue(entry)
    for entry in _entries(document, "applications"):
        _apply_application(entry)
    for entry in _entries(document, "desktop_node_types"):
        _apply_desktop_node_type(entry)
    if "pricing" in document:
        _apply_pricing(document["pricing"])

    kinds = ("clusters", "queues", "applications", "desktop_node_types")
    counts = {kind: len(document.get(kind) or []) for kind in kinds}
    logger.info("Catalog loaded: %s", counts)
    return counts


def _entries(document: dict, kind: str) -> list[dict]:
    """Return the list under `kind`, checking that it is a list of mappings."""
    entries = document.get(kind) or []
    if not isinstance(entries, list) or not all(isinstance(item, dict) for item in entries):
        raise CatalogError(f"`{kind}` must be a list of mappings.")
    return entries


def _required(entry: dict, key: str, kind: str) -> Any:
    """Return entry[key] or raise a CatalogError naming what is missing."""
    if entry.get(key) in (None, ""):
        raise CatalogError(f"A {kind} entry has no `{key}`: {entry}")
    return entry[key]


def _apply_cluster(entry: dict) -> None:
    """Create or update one cluster."""
    name = _required(entry, "name", "cluster")
    backend = entry.get("backend", Backend.LOCAL)
    if backend not in Backend.values:
        raise CatalogError(f"Cluster {name}: backend must be one of {Backend.values}.")
    Cluster.objects.update_or_create(
        name=name, defaults={"backend": backend, "description": entry.get("description", "")}
    )


def _apply_queue(entry: dict) -> None:
    """Create or update one queue on an existing cluster."""
    code = _required(entry, "queue_code", "queue")
    cluster_name = _required(entry, "cluster", "queue")
    cluster = Cluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        raise CatalogError(f"Queue {code}: no cluster named {cluster_name}.")

    defaults = {field: entry[field] for field in QUEUE_FIELDS if field in entry}
    for price_field in ("core_hour_price", "node_hour_price"):
        if defaults.get(price_field) is not None:
            defaults[price_field] = _price(defaults[price_field], code)
    defaults.setdefault("name", code)
    sla = entry.get("sla") or {}
    defaults["sla_name"] = sla.get("name", "Standard")
    defaults["sla_description"] = sla.get("description", "")
    if "max_allocation" not in defaults:
        raise CatalogError(f"Queue {code}: `max_allocation` (cores) is required.")
    defaults["cluster"] = cluster
    Queue.objects.update_or_create(queue_code=code, defaults=defaults)


def _price(value: Any, code: str) -> Decimal:
    """A price from the file, read as a decimal (never through a float)."""
    try:
        price = Decimal(str(value))
    except InvalidOperation as error:
        raise CatalogError(f"{code}: the price {value!r} is not a number.") from error
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{code}: a price must be zero or more.")
    return price


def _apply_application(entry: dict) -> None:
    """Create or update one application and its versions."""
    name = _required(entry, "product_name", "application")
    application, _ = Application.objects.update_or_create(
        product_name=name,
        defaults={
            "description": entry.get("description", ""),
            "small_print": entry.get("small_print", ""),
        },
    )
    for version in entry.get("versions") or []:
        _apply_version(application, version)
    if "licence_template" in entry:
        _apply_licence_template(application, entry["licence_template"])


def _apply_licence_template(application: Application, variables) -> None:
    """Record the licence variables an application's jobs expect."""
    from epic.licences.services import TemplateError, set_template

    try:
        set_template(application, variables)
    except TemplateError as error:
        raise CatalogError(f"Application {application.product_name}: {error}") from error


def _apply_version(application: Application, entry: dict) -> None:
    """Create or update one application version and the queues it runs on."""
    code = _required(entry, "app_code", "application version")
    driver = _required(entry, "driver", "application version")
    if driver not in driver_names():
        raise CatalogError(f"Version {code}: driver must be one of {driver_names()}.")

    environment = entry.get("environment") or {}
    if not all(isinstance(value, str) for value in environment.values()):
        raise CatalogError(f"Version {code}: environment values must be strings.")
    scripts = {name: entry.get(name) or "" for name in VERSION_SCRIPTS}
    if not all(isinstance(text, str) for text in scripts.values()):
        raise CatalogError(f"Version {code}: {', '.join(VERSION_SCRIPTS)} must be text.")
    version, _ = ApplicationVersion.objects.update_or_create(
        app_code=code,
        defaults={
            "application": application,
            "version": str(_required(entry, "version", "application version")),
            "driver": driver,
            "environment": environment,
            "software_core_hour_price": _price(entry.get("software_core_hour_price", 0), code),
            **scripts,
        },
    )

    queues = list(Queue.objects.filter(queue_code__in=entry.get("queues") or []))
    missing = set(entry.get("queues") or []) - {queue.queue_code for queue in queues}
    if missing:
        raise CatalogError(f"Version {code}: unknown queues {sorted(missing)}.")
    version.queues.set(queues)


def _apply_desktop_node_type(entry: dict) -> None:
    """Create or update one desktop node type."""
    code = _required(entry, "node_code", "desktop node type")
    fields = {
        "name": entry.get("name", code),
        "description": entry.get("description", code),
        "cores": _required(entry, "cores", "desktop node type"),
        "gpus": entry.get("gpus", 0),
    }
    DesktopNodeType.objects.update_or_create(node_code=code, defaults=fields)


def _apply_pricing(entry) -> None:
    """Set the base currency, exchange rates, service charge and tax rates."""
    from epic.billing.models import PricingPolicy

    if not isinstance(entry, dict):
        raise CatalogError("`pricing` must be a mapping.")
    policy = PricingPolicy.current()
    policy.base_currency = entry.get("base_currency", policy.base_currency)
    for rate in ("service_charge_rate", "tax_rate"):
        if rate in entry:
            setattr(policy, rate, _price(entry[rate], f"pricing.{rate}"))
    rates = entry.get("exchange_rates", {})
    if not isinstance(rates, dict) or set(rates) - set(CURRENCIES):
        raise CatalogError(f"pricing.exchange_rates names currencies among {CURRENCIES} only.")
    policy.exchange_rates = {
        **policy.exchange_rates,
        **{
            code: str(_price(rate, f"pricing.exchange_rates.{code}"))
            for code, rate in rates.items()
        },
    }
    if policy.base_currency not in CURRENCIES:
        raise CatalogError(f"pricing.base_currency must be one of {CURRENCIES}.")
    policy.save()
