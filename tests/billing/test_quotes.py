"""Quotes: exact itemised amounts per task and per queue, worked out by hand from round prices.

Prices of the catalog in conftest: the `cores` queue 1.00 a core-hour (8 cores a node, 2 threads
a core), `nodes` 10.00 a node-hour (8 cores a node), `gpus` 0.50 a core-hour (8 cores and 4
GPUs a node); software 0.25 a core-hour; service charge 10% of iaas plus software; acme's
discount 5% of that plus the service charge; tax 20% of what remains. Each item is rounded
half-up to the penny once, in the display currency; a total is the sum of the rounded items.
"""

import pytest

from epic.jobs.models import Job

pytestmark = pytest.mark.django_db

ITEMS = ("iaas_cost", "software_cost", "service_charge", "discount", "tax", "total")


def task(reference: str = "run", partitions: int = 1, runtime: int = 1, **options) -> dict:
    """One task of a job spec."""
    return {"reference": reference, "partitions": partitions, "runtime": runtime, **options}


def quote(client, *tasks: dict, queue_code: str | None = None) -> dict:
    """The answer of POST /job/quote/ for the priced application."""
    spec = {"app_code": "priced", "tasks": list(tasks)}
    if queue_code:
        spec["queue_code"] = queue_code
    response = client.post("/api/v2/job/quote/", spec, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def amounts(row: dict) -> dict[str, str]:
    """The amounts of one itemised price, by item."""
    return {item: row[item]["amount"] for item in ITEMS}


def priced(iaas, software, service, discount, tax, total) -> dict[str, str]:
    """Expected amounts, in the order of ITEMS."""
    return dict(zip(ITEMS, (iaas, software, service, discount, tax, total), strict=True))


@pytest.fixture(autouse=True)
def prices(priced_catalog, acme_discount):
    """Every test quotes on the round-price catalog, for acme with its 5% discount."""


def test_serial_task_is_priced_item_by_item(alice):
    answer = quote(alice, task(runtime=2, hyperthreading=False), queue_code="cores")

    # 1 core x 2 h x 1.00 = 2.00; software 1 x 2 x 0.25 = 0.50; service 10% of 2.50 = 0.25;
    # discount 5% of 2.75 = 0.1375 -> 0.14; tax 20% of 2.6125 = 0.5225 -> 0.52;
    # total 2.00 + 0.50 + 0.25 - 0.14 + 0.52 = 3.13
    assert amounts(answer["task_quotes"][0]) == priced(
        "2.00", "0.50", "0.25", "0.14", "0.52", "3.13"
    )
    assert answer["task_quotes"][0]["reference"] == "run"
    assert answer["task_quotes"][0]["queue_code"] == "cores"
    assert answer["task_quotes"][0]["total"] == {
        "amount": "3.13",
        "currency": "GBP",
        "currency_symbol": "£",
    }


def test_parallel_task_without_hyperthreading_holds_one_core_per_partition(alice):
    answer = quote(alice, task(partitions=10, hyperthreading=False), queue_code="cores")

    # 10 cores x 1 h x 1.00 = 10.00; software 2.50; service 1.25; discount 5% of 13.75 =
    # 0.6875 -> 0.69; tax 20% of 13.0625 = 2.6125 -> 2.61; total 15.67
    assert amounts(answer["task_quotes"][0]) == priced(
        "10.00", "2.50", "1.25", "0.69", "2.61", "15.67"
    )


def test_parallel_task_with_hyperthreading_holds_one_core_per_two_partitions(alice):
    answer = quote(alice, task(partitions=10, hyperthreading=True), queue_code="cores")

    # 10 partitions / 2 threads = 5 cores: 5.00; software 1.25; service 10% of 6.25 = 0.625 ->
    # 0.63 (half up); discount 5% of 6.875 = 0.34375 -> 0.34; tax 20% of 6.53125 = 1.30625 ->
    # 1.31; total 5.00 + 1.25 + 0.63 - 0.34 + 1.31 = 7.85
    assert amounts(answer["task_quotes"][0]) == priced(
        "5.00", "1.25", "0.63", "0.34", "1.31", "7.85"
    )


def test_socket_distribution_holds_a_whole_socket_per_partition(alice):
    answer = quote(alice, task(partitions=3, task_distribution="socket"), queue_code="cores")

    # 3 sockets x 4 cores = 12 cores: 12.00; software 3.00; service 1.50; discount 5% of
    # 16.50 = 0.825 -> 0.83; tax 20% of 15.675 = 3.135 -> 3.14; total 18.81
    assert amounts(answer["task_quotes"][0]) == priced(
        "12.00", "3.00", "1.50", "0.83", "3.14", "18.81"
    )


def test_node_distribution_holds_whole_nodes(alice):
    answer = quote(alice, task(partitions=2, task_distribution="node"), queue_code="cores")

    # 2 nodes x 8 cores = 16 cores: 16.00; software 4.00; service 2.00; discount 5% of 22.00 =
    # 1.10; tax 20% of 20.90 = 4.18; total 25.08
    assert amounts(answer["task_quotes"][0]) == priced(
        "16.00", "4.00", "2.00", "1.10", "4.18", "25.08"
    )


def test_node_priced_queue_charges_by_the_node_hour(alice):
    answer = quote(alice, task(runtime=2), queue_code="nodes")

    # 1 node x 2 h x 10.00 = 20.00; software 1 core x 2 x 0.25 = 0.50; service 2.05;
    # discount 5% of 22.55 = 1.1275 -> 1.13; tax 20% of 21.4225 = 4.2845 -> 4.28; total 25.70
    assert amounts(answer["task_quotes"][0]) == priced(
        "20.00", "0.50", "2.05", "1.13", "4.28", "25.70"
    )


def test_device_distribution_holds_whole_nodes_for_their_gpus(alice):
    answer = quote(alice, task(partitions=6, task_distribution="device"), queue_code="gpus")

    # 6 tasks / 4 GPUs a node = 2 nodes = 16 cores x 0.50 = 8.00; software 4.00; service 1.20;
    # discount 5% of 13.20 = 0.66; tax 20% of 12.54 = 2.508 -> 2.51; total 15.05
    assert amounts(answer["task_quotes"][0]) == priced(
        "8.00", "4.00", "1.20", "0.66", "2.51", "15.05"
    )


def test_tasks_per_device_share_gpus_and_need_fewer_nodes(alice):
    spec = task(partitions=6, task_distribution="device", tasks_per_device=2)

    answer = quote(alice, spec, queue_code="gpus")

    # 6 tasks / (4 GPUs x 2) = 1 node = 8 cores x 0.50 = 4.00; software 2.00; service 0.60;
    # discount 5% of 6.60 = 0.33; tax 20% of 6.27 = 1.254 -> 1.25; total 7.52
    assert amounts(answer["task_quotes"][0]) == priced(
        "4.00", "2.00", "0.60", "0.33", "1.25", "7.52"
    )


def test_team_without_discount_pays_the_full_price(bob):
    answer = quote(bob, task(runtime=2, hyperthreading=False), queue_code="cores")

    # 2.00 + 0.50 + service 0.25; no discount; tax 20% of 2.75 = 0.55; total 3.30
    assert amounts(answer["task_quotes"][0]) == priced(
        "2.00", "0.50", "0.25", "0.00", "0.55", "3.30"
    )


@pytest.mark.parametrize(
    ("currency", "symbol", "expected"),
    [
        # Each base item x 1.25, then rounded: 2.00 -> 2.50, 0.50 -> 0.625 -> 0.63, 0.25 ->
        # 0.3125 -> 0.31, 0.1375 -> 0.171875 -> 0.17, 0.5225 -> 0.653125 -> 0.65; total 3.92
        ("EUR", "€", priced("2.50", "0.63", "0.31", "0.17", "0.65", "3.92")),
        # x 1.50: 3.00, 0.75, 0.375 -> 0.38, 0.20625 -> 0.21, 0.78375 -> 0.78; total 4.70
        ("USD", "$", priced("3.00", "0.75", "0.38", "0.21", "0.78", "4.70")),
        ("GBP", "£", priced("2.00", "0.50", "0.25", "0.14", "0.52", "3.13")),
    ],
)
def test_quote_is_shown_in_the_display_currency(alice, currency, symbol, expected):
    settings = alice.patch(
        "/api/v2/profile/settings/", {"display_currency": currency}, format="json"
    )
    assert settings.status_code == 200

    answer = quote(alice, task(runtime=2, hyperthreading=False), queue_code="cores")

    assert amounts(answer["task_quotes"][0]) == expected
    assert answer["totals"][0]["total"] == {
        "amount": expected["total"],
        "currency": currency,
        "currency_symbol": symbol,
    }


def test_totals_add_up_each_queue_that_can_run_every_task(alice):
    serial = task("serial", runtime=2, hyperthreading=False)
    nodes = task("nodes", partitions=2, task_distribution="node")

    answer = quote(alice, serial, nodes)

    totals = {row["queue_code"]: amounts(row) for row in answer["totals"]}
    assert totals == {
        # serial 3.13 (2.00, 0.50, 0.25, 0.14, 0.52) + nodes 25.08 (16.00, 4.00, 2.00, 1.10,
        # 4.18) = 28.21
        "cores": priced("18.00", "4.50", "2.25", "1.24", "4.70", "28.21"),
        # serial 25.70 (20.00, 0.50, 2.05, 1.13, 4.28) + nodes: 2 nodes x 10.00 = 20.00,
        # 16 cores x 0.25 = 4.00, 2.40, 5% of 26.40 = 1.32, 20% of 25.08 = 5.016 -> 5.02:
        # 30.10; 25.70 + 30.10 = 55.80
        "nodes": priced("40.00", "4.50", "4.45", "2.45", "9.30", "55.80"),
        # serial: 1.00, 0.50, 0.15, 5% of 1.65 = 0.0825 -> 0.08, 20% of 1.5675 -> 0.31: 1.88;
        # nodes: 16 cores x 0.50 = 8.00, 4.00, 1.20, 0.66, 2.51: 15.05; 1.88 + 15.05 = 16.93
        "gpus": priced("9.00", "4.50", "1.35", "0.74", "2.82", "16.93"),
    }
    assert answer["unavailable"] == []
    by_queue = {(row["queue_code"], row["reference"]): row for row in answer["task_quotes"]}
    assert amounts(by_queue["nodes", "nodes"]) == priced(
        "20.00", "4.00", "2.40", "1.32", "5.02", "30.10"
    )
    assert len(answer["task_quotes"]) == 6


def test_queue_that_cannot_run_a_task_gets_no_quote_and_says_why(alice):
    answer = quote(alice, task("devices", partitions=4, task_distribution="device"))

    # 4 tasks fit one node of gpus: 8 cores x 0.50 = 4.00 (see the tasks_per_device test).
    assert [row["queue_code"] for row in answer["totals"]] == ["gpus"]
    assert [row["queue_code"] for row in answer["task_quotes"]] == ["gpus"]
    assert {row["queue_code"]: row["reason"] for row in answer["unavailable"]} == {
        "cores": "cores has no devices.",
        "nodes": "nodes has no devices.",
    }


def test_task_no_queue_can_run_gets_no_quote_and_every_reason(alice):
    too_big = task("big", partitions=40, hyperthreading=False)
    too_long = task("long", runtime=30)

    answer = quote(alice, too_big, too_long)

    assert answer["task_quotes"] == []
    assert answer["totals"] == []
    assert {row["queue_code"]: row["reason"] for row in answer["unavailable"]} == {
        # 40 cores / 8 a node = 5 nodes.
        "cores": "big needs 5 nodes; cores has 4.",
        "nodes": "big needs 5 nodes; nodes has 2.",
        "gpus": "big needs 5 nodes; gpus has 2.",
    }


def test_task_longer_than_every_queue_allows_says_so(alice):
    answer = quote(alice, task("long", runtime=30), queue_code="cores")

    assert answer["totals"] == []
    assert answer["unavailable"] == [
        {"queue_code": "cores", "reason": "long asks for 30 h; cores allows 24 h."}
    ]


def test_submitted_job_costs_what_it_was_quoted(alice, upload):
    upload(alice.user, "case/run.sh", "true\n")
    spec = {"app_code": "priced", "tasks": [task(runtime=2, hyperthreading=False)]}
    binding = {
        "name": "priced",
        "spec": spec,
        "app_options": {"script": "run.sh"},
        "cluster": {"queue_code": "cores"},
        "input_data": {"path": "epic://case/"},
    }

    response = alice.post("/api/v2/job/", {"config": {}, "jobs": [binding]}, format="json")

    assert response.status_code == 201, response.json()
    # The serial task's quote on cores: 3.13.
    assert response.json()[0]["cost"] == "£3.13"
    assert str(Job.objects.get().quoted_cost) == "3.13"
