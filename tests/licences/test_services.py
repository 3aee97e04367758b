"""What the worker reads: a job's licence variables and log tails with values masked."""

import logging

import pytest

from epic.accounts.models import Team
from epic.catalog.models import Application
from epic.licences.models import LicenceTemplate
from epic.licences.services import (
    TemplateError,
    delete_licence,
    environment_for,
    redact,
    set_template,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(db) -> Team:
    """Alice's team."""
    return Team.objects.get_or_create(name="acme")[0]


def test_environment_for_merges_the_application_licences(acme, fluent, make_licence):
    make_licence("acme", {"ANSYSLMD_LICENSE_FILE": "1055@a"}, application=fluent)
    make_licence("acme", {"ANSYSLI_SERVERS": "2325@a"}, application=fluent)

    assert environment_for(acme, fluent) == {
        "ANSYSLMD_LICENSE_FILE": "1055@a",
        "ANSYSLI_SERVERS": "2325@a",
    }


def test_environment_for_lets_a_later_licence_win(acme, fluent, make_licence):
    make_licence("acme", {"LM_LICENSE_FILE": "old@a"}, application=fluent)
    make_licence("acme", {"LM_LICENSE_FILE": "new@a"}, application=fluent)

    assert environment_for(acme, fluent) == {"LM_LICENSE_FILE": "new@a"}


def test_environment_for_lets_an_application_licence_beat_a_team_wide_one(
    acme, fluent, make_licence
):
    make_licence("acme", {"LM_LICENSE_FILE": "app@a"}, application=fluent)
    make_licence("acme", {"LM_LICENSE_FILE": "team@a", "SITE": "x"})

    assert environment_for(acme, fluent) == {"LM_LICENSE_FILE": "app@a", "SITE": "x"}
    assert environment_for(acme, fluent.pk) == {"LM_LICENSE_FILE": "app@a", "SITE": "x"}


def test_environment_for_skips_other_applications_and_teams(acme, fluent, make_licence):
    other = Application.objects.create(product_name="StarCCM")
    make_licence("acme", {"CDLMD_LICENSE_FILE": "1999@a"}, application=other)
    make_licence("globex", {"ANSYSLMD_LICENSE_FILE": "1055@g"}, application=fluent)

    assert environment_for(acme, fluent) == {}


def test_environment_for_skips_inactive_licences(acme, fluent, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "1@a"}, application=fluent)
    licence.active = False
    licence.save()

    assert environment_for(acme, fluent) == {}


def test_redact_masks_every_value_of_the_team(acme, fluent, make_licence):
    make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"}, application=fluent)
    make_licence("acme", {"TOKEN": "s3cr3t-token"})
    log = "license 27000@lic ok\nusing s3cr3t-token twice: s3cr3t-token\n"

    assert redact(log, acme, fluent) == "license ******** ok\nusing ******** twice: ********\n"


def test_redact_masks_a_value_containing_another_whole(acme, fluent, make_licence):
    make_licence("acme", {"SHORT": "abcd", "LONG": "xxabcdxx"}, application=fluent)

    assert redact("see xxabcdxx and abcd", acme, fluent) == "see ******** and ********"


def test_redact_treats_values_literally(acme, fluent, make_licence):
    make_licence("acme", {"PATTERN": "a.b*c(d"}, application=fluent)

    assert redact("a.b*c(d and aXbbbcd", acme, fluent) == "******** and aXbbbcd"


def test_redact_leaves_values_shorter_than_four(acme, fluent, make_licence):
    make_licence("acme", {"PORT": "123"}, application=fluent)

    assert redact("step 123 done", acme, fluent) == "step 123 done"


def test_redact_masks_values_of_inactive_licences(acme, fluent, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"}, application=fluent)
    licence.active = False
    licence.save()

    assert redact("27000@lic", acme, fluent) == "********"


def test_redact_leaves_values_of_other_teams(acme, fluent, make_licence):
    make_licence("globex", {"LM_LICENSE_FILE": "27000@lic"}, application=fluent)

    assert redact("27000@lic", acme, fluent) == "27000@lic"


def test_redact_without_licences_returns_the_text(acme, fluent):
    assert redact("plain log", acme, fluent) == "plain log"
    assert redact("", acme, fluent) == ""


def test_values_never_reach_the_logs(acme, fluent, make_licence, caplog):
    caplog.set_level(logging.DEBUG, logger="epic")

    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@secret"}, application=fluent)
    delete_licence(licence)

    assert "LM_LICENSE_FILE" in caplog.text
    assert "27000@secret" not in caplog.text


def test_set_template_replaces_the_earlier_list(fluent):
    set_template(fluent, [{"variable_name": "OLD", "help_text": "old"}])
    set_template(fluent, [{"variable_name": "NEW", "help_text": "new", "var_type": "integer"}])

    assert LicenceTemplate.objects.get(application=fluent).variables == [
        {"variable_name": "NEW", "help_text": "new", "var_type": "integer", "default": None}
    ]


@pytest.mark.parametrize(
    "variables",
    [
        "LM_LICENSE_FILE",
        ["LM_LICENSE_FILE"],
        [{"help_text": "no name"}],
        [{"variable_name": "PATH", "help_text": "reserved"}],
        [{"variable_name": "A-B", "help_text": "bad name"}],
        [{"variable_name": "A"}],
        [{"variable_name": "A", "help_text": ""}],
        [{"variable_name": "A", "help_text": "h", "var_type": "float"}],
        [{"variable_name": "A", "help_text": "h", "default": ""}],
        [{"variable_name": "A", "help_text": "h", "default": 5}],
        [{"variable_name": "A", "help_text": "x" * 301}],
        [{"variable_name": "A", "help_text": "h", "defualt": "x"}],
        [{"variable_name": "A", "help_text": "h"}, {"variable_name": "A", "help_text": "h"}],
        [{"variable_name": f"V{n}", "help_text": "h"} for n in range(65)],
    ],
)
def test_set_template_refuses_a_bad_list(fluent, variables):
    with pytest.raises(TemplateError):
        set_template(fluent, variables)

    assert LicenceTemplate.objects.count() == 0
