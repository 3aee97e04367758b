"""Billing limits: every team of a billing profile, their monthly limits and the profile's cap."""

from decimal import Decimal

import pytest

from epic.accounts.models import Team
from epic.billing.models import TeamBilling
from epic.cli import build_parser
from tests.billing.conftest import set_team_billing

pytestmark = pytest.mark.django_db


def money(amount: str, currency: str = "GBP", symbol: str = "£") -> dict:
    """A money object as the API shows it."""
    return {"amount": amount, "currency": currency, "currency_symbol": symbol}


def team_id(name: str = "acme") -> int:
    """A team's id."""
    return Team.objects.get(name=name).pk


def monthly_limit(name: str = "acme") -> Decimal | None:
    """A team's monthly limit as stored."""
    return TeamBilling.of(Team.objects.get(name=name)).monthly_limit


def limit_change(amount: str, team: str = "acme") -> dict:
    """A PATCH body setting one team's monthly limit."""
    return {"limits": [{"id": team_id(team), "budget": {"monthly_limit": {"amount": amount}}}]}


def run_admin(*args: str) -> int:
    """Run an `epic admin` command on the test database; answer its exit code."""
    parsed = build_parser().parse_args(["admin", *args])
    return parsed.handler(parsed)


@pytest.fixture(autouse=True)
def acme_limits(alice):
    """Acme: 100.00 a month, jobs over 5.00 need authorisation; its profile is capped at 500."""
    billing = set_team_billing(
        "acme",
        monthly_limit=Decimal("100.00"),
        jobauth_enabled=True,
        jobauth_cost_threshold=Decimal("5.00"),
    )
    billing.profile.max_limit = Decimal("500.00")
    billing.profile.save()
    return billing


def test_limits_show_the_team_its_budget_and_its_authorisation_rule(alice):
    response = alice.get("/api/v2/billing/limits/")

    assert response.status_code == 200
    assert response.json() == {
        "limits": [
            {
                "id": team_id(),
                "team": {
                    "id": team_id(),
                    "name": "acme",
                    "number_of_members": 1,
                    "user_role": "user",
                },
                "budget": {"monthly_limit": money("100.00")},
                "project": None,
                "jobauth": {
                    "enabled": True,
                    "all_jobs": False,
                    "cost_threshold": money("5.00"),
                    "description_str": "Authorise jobs over £5.00",
                },
            }
        ],
        "max_limit": {"amount": "500.00", "currency": "GBP"},
        "max_limit_str": "£500.00",
        "total": {"amount": "100.00", "currency": "GBP"},
        "total_str": "£100.00",
    }


def test_limits_are_shown_in_the_display_currency(carol, priced_catalog):
    carol.patch("/api/v2/profile/settings/", {"display_currency": "EUR"}, format="json")

    answer = carol.get("/api/v2/billing/limits/").json()

    # At 1.25 euros a pound: 100.00 -> 125.00, 5.00 -> 6.25, 500.00 -> 625.00.
    limit = answer["limits"][0]
    assert limit["team"]["user_role"] == "admin"
    assert limit["team"]["number_of_members"] == 2
    assert limit["budget"]["monthly_limit"] == money("125.00", "EUR", "€")
    assert limit["jobauth"]["cost_threshold"] == money("6.25", "EUR", "€")
    assert limit["jobauth"]["description_str"] == "Authorise jobs over €6.25"
    assert answer["max_limit_str"] == "€625.00"
    assert answer["total"] == {"amount": "125.00", "currency": "EUR"}


def test_limits_describe_every_authorisation_rule(alice):
    set_team_billing("acme", jobauth_all_jobs=True)
    every = alice.get("/api/v2/billing/limits/").json()["limits"][0]["jobauth"]
    set_team_billing("acme", jobauth_enabled=False)
    none = alice.get("/api/v2/billing/limits/").json()["limits"][0]["jobauth"]

    assert every["description_str"] == "Every job needs authorisation."
    assert none["description_str"] == "Jobs need no authorisation."
    assert none["enabled"] is False


def test_rule_of_a_large_threshold_still_fits_epiccore(alice):
    set_team_billing("acme", jobauth_cost_threshold=Decimal("123456789012.50"))

    rule = alice.get("/api/v2/billing/limits/").json()["limits"][0]["jobauth"]

    # epiccore refuses a description over 30 characters.
    assert rule["description_str"] == "Jobs over £123456789012.50"


@pytest.mark.parametrize("manager", ["carol", "owen"])
def test_admin_or_owner_changes_the_team_limit(request, manager):
    client = request.getfixturevalue(manager)

    response = client.patch("/api/v2/billing/limits/", limit_change("200.00"), format="json")

    assert response.status_code == 200
    assert response.json()["limits"][0]["budget"]["monthly_limit"] == money("200.00")
    assert response.json()["total_str"] == "£200.00"
    assert monthly_limit() == Decimal("200.00")


def test_admin_changes_the_authorisation_rule(carol):
    change = {
        "id": team_id(),
        "jobauth": {"enabled": True, "all_jobs": True, "cost_threshold": {"amount": "7.50"}},
    }

    response = carol.patch("/api/v2/billing/limits/", {"limits": [change]}, format="json")

    assert response.status_code == 200
    billing = TeamBilling.objects.get(team__name="acme")
    assert (billing.jobauth_all_jobs, billing.jobauth_cost_threshold) == (True, Decimal("7.50"))


def test_limit_sent_in_the_display_currency_is_stored_in_the_base_currency(carol, priced_catalog):
    carol.patch("/api/v2/profile/settings/", {"display_currency": "EUR"}, format="json")

    response = carol.patch("/api/v2/billing/limits/", limit_change("250.00"), format="json")

    # 250.00 euros / 1.25 = 200.00 pounds.
    assert response.status_code == 200
    assert monthly_limit() == Decimal("200.00")
    assert response.json()["limits"][0]["budget"]["monthly_limit"]["amount"] == "250.00"


def test_user_may_not_change_a_limit(alice):
    response = alice.patch("/api/v2/billing/limits/", limit_change("200.00"), format="json")

    assert response.status_code == 403
    assert monthly_limit() == Decimal("100.00")


def test_limits_over_the_profile_maximum_are_refused_and_nothing_changes(carol):
    response = carol.patch("/api/v2/billing/limits/", limit_change("500.01"), format="json")

    assert response.status_code == 400
    assert response.json() == {
        "limits": ["The limits add up to £500.01, over the maximum £500.00."]
    }
    assert monthly_limit() == Decimal("100.00")


def test_limits_of_teams_sharing_a_profile_add_up(carol, bob, acme_limits):
    globex = set_team_billing("globex", monthly_limit=Decimal("300.00"))
    globex.profile = acme_limits.profile
    globex.save()

    refused = carol.patch("/api/v2/billing/limits/", limit_change("200.01"), format="json")
    accepted = carol.patch("/api/v2/billing/limits/", limit_change("200.00"), format="json")

    assert refused.status_code == 400
    assert refused.json() == {
        "limits": ["The limits add up to £500.01, over the maximum £500.00."]
    }
    assert accepted.status_code == 200
    assert [row["team"]["name"] for row in accepted.json()["limits"]] == ["acme", "globex"]
    assert accepted.json()["total_str"] == "£500.00"


def test_admin_may_not_change_a_team_they_do_not_manage(carol, bob, acme_limits):
    globex = set_team_billing("globex", monthly_limit=Decimal("300.00"))
    globex.profile = acme_limits.profile
    globex.save()

    body = {
        "limits": [*limit_change("50.00")["limits"], *limit_change("10.00", "globex")["limits"]]
    }
    response = carol.patch("/api/v2/billing/limits/", body, format="json")

    assert response.status_code == 403
    assert (monthly_limit(), monthly_limit("globex")) == (Decimal("100.00"), Decimal("300.00"))


def test_team_outside_the_profile_is_refused(carol, bob):
    response = carol.patch(
        "/api/v2/billing/limits/", limit_change("1.00", "globex"), format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"limits": {"0": {"id": ["No such team."]}}}
    assert monthly_limit("globex") is None


def test_max_limit_command_sets_the_profile_maximum(alice, capsys):
    exit_code = run_admin("billing", "max-limit", "acme", "250")

    assert exit_code == 0
    assert capsys.readouterr().out.endswith("profile max limit 250.00\n")
    answer = alice.get("/api/v2/billing/limits/").json()
    assert answer["max_limit"] == {"amount": "250.00", "currency": "GBP"}
    assert answer["max_limit_str"] == "£250.00"


def test_max_limit_command_refuses_an_unknown_team(alice, capsys):
    exit_code = run_admin("billing", "max-limit", "nobody", "250")

    assert exit_code == 1
    assert capsys.readouterr().err == "epic: no team named nobody\n"


def test_team_command_sets_discount_budget_and_authorisation(alice):
    exit_code = run_admin(
        "billing", "team", "acme", "--discount", "0.05", "--monthly-limit", "80",
        "--jobauth", "yes", "--jobauth-all-jobs", "no", "--jobauth-threshold", "0",
    )  # fmt: skip

    assert exit_code == 0
    billing = TeamBilling.objects.get(team__name="acme")
    assert billing.discount_rate == Decimal("0.05")
    assert billing.monthly_limit == Decimal("80")
    assert (billing.jobauth_enabled, billing.jobauth_cost_threshold) == (True, Decimal(0))


def test_team_command_removes_a_monthly_limit(alice, capsys):
    exit_code = run_admin("billing", "team", "acme", "--monthly-limit", "none")

    assert exit_code == 0
    assert monthly_limit() is None
    assert "monthly limit none" in capsys.readouterr().out


def test_limit_set_in_a_display_currency_reads_back_as_sent(carol, priced_catalog):
    carol.patch("/api/v2/profile/settings/", {"display_currency": "USD"}, format="json")

    response = carol.patch("/api/v2/billing/limits/", limit_change("100.00"), format="json")

    # 100.00 dollars at 1.50 a pound is 66.666... pounds, which must still read as 100.00.
    assert response.json()["limits"][0]["budget"]["monthly_limit"] == money("100.00", "USD", "$")
