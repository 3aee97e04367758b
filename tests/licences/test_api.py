"""The /licenses/ endpoints: shapes, roles, masking, tenancy and templates."""

import pytest

from epic.accounts.models import Membership, Role, Team
from epic.licences.models import Licence, template_id
from epic.licences.services import set_template
from tests.licences.bodies import URL, licence_body

pytestmark = pytest.mark.django_db

# Field names of epiccore's License, WritableLicense, EnvVar, Application and LicenseTemplate.
LICENSE_FIELDS = {"id", "active", "display_name", "description", "environment", "application"}
WRITABLE_LICENSE_FIELDS = {"id", "display_name", "description", "environment", "application"}
ENV_VAR_FIELDS = {"variable_name", "value"}
APPLICATION_FIELDS = {"pk", "name"}
TEMPLATE_FIELDS = {"id", "application", "environment"}
ENV_VAR_TEMPLATE_FIELDS = {"variable_name", "help_text", "var_type", "default"}
PAGE_FIELDS = {"count", "next", "previous", "results"}


def test_create_answers_the_writable_licence_shape(carol, fluent):
    response = carol.post(URL, licence_body(fluent.pk), format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == WRITABLE_LICENSE_FIELDS
    licence = Licence.objects.get()
    assert body == {
        "id": str(licence.pk),
        "display_name": "Fluent site licence",
        "description": "Floating licence of the site",
        "environment": [
            {"variable_name": "ANSYSLMD_LICENSE_FILE", "value": "1055@lic.example.org"},
            {"variable_name": "ANSYSLI_SERVERS", "value": "2325@lic.example.org"},
        ],
        "application": fluent.pk,
    }
    assert licence.team.name == "acme"
    assert licence.active is True


def test_create_without_application_or_description_stores_nulls(carol):
    body = licence_body()
    del body["application"], body["description"]

    response = carol.post(URL, body, format="json")

    assert response.status_code == 201
    assert response.json()["application"] is None
    assert response.json()["description"] is None


def test_read_shows_values_to_an_admin(carol, fluent):
    created = carol.post(URL, licence_body(fluent.pk), format="json").json()

    response = carol.get(f"{URL}{created['id']}/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == LICENSE_FIELDS
    assert body == {
        "id": created["id"],
        "active": True,
        "display_name": "Fluent site licence",
        "description": "Floating licence of the site",
        "environment": created["environment"],
        "application": {"pk": fluent.pk, "name": "Fluent"},
    }
    assert all(set(item) == ENV_VAR_FIELDS for item in body["environment"])
    assert set(body["application"]) == APPLICATION_FIELDS


def test_read_shows_values_to_an_owner(olga, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    response = olga.get(f"{URL}{licence.pk}/")

    assert response.json()["environment"] == [
        {"variable_name": "LM_LICENSE_FILE", "value": "27000@lic"}
    ]


def test_read_masks_values_for_a_user(alice, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic", "KEY": "x"})

    response = alice.get(f"{URL}{licence.pk}/")

    assert response.status_code == 200
    assert response.json()["environment"] == [
        {"variable_name": "LM_LICENSE_FILE", "value": "********"},
        {"variable_name": "KEY", "value": "********"},
    ]


def test_list_masks_values_for_a_user(alice, make_licence):
    make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    response = alice.get(URL)

    assert response.status_code == 200
    assert response.json()["results"][0]["environment"] == [
        {"variable_name": "LM_LICENSE_FILE", "value": "********"}
    ]
    assert "27000@lic" not in response.content.decode()


def test_list_is_paginated_oldest_first(carol, make_licence, fluent):
    first = make_licence("acme", {"A_KEY": "one"}, name="First")
    second = make_licence("acme", {"B_KEY": "two"}, application=fluent, name="Second")

    body = carol.get(URL).json()
    page = carol.get(URL, {"limit": 1, "offset": 1}).json()

    assert set(body) == PAGE_FIELDS
    assert body["count"] == 2
    assert body["next"] is None
    assert [item["id"] for item in body["results"]] == [str(first.pk), str(second.pk)]
    assert body["results"][0]["application"] is None
    assert body["results"][1]["application"] == {"pk": fluent.pk, "name": "Fluent"}
    assert all(set(item) == LICENSE_FIELDS for item in body["results"])
    assert page["count"] == 2
    assert [item["id"] for item in page["results"]] == [str(second.pk)]
    assert page["previous"] is not None


def test_list_reads_a_bounded_number_of_queries(
    carol, make_licence, fluent, django_assert_max_num_queries
):
    for index in range(10):
        make_licence("acme", {f"KEY_{index}": "value"}, application=fluent)

    with django_assert_max_num_queries(6):
        response = carol.get(URL)

    assert response.json()["count"] == 10


def test_delete_removes_the_licence(carol, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    response = carol.delete(f"{URL}{licence.pk}/")

    assert response.status_code == 204
    assert Licence.objects.count() == 0
    assert carol.get(f"{URL}{licence.pk}/").status_code == 404


def test_create_is_forbidden_to_a_user(alice):
    response = alice.post(URL, licence_body(), format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Licence.objects.count() == 0


def test_delete_is_forbidden_to_a_user(alice, make_licence):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    response = alice.delete(f"{URL}{licence.pk}/")

    assert response.status_code == 403
    assert set(response.json()) == {"detail", "code"}
    assert Licence.objects.count() == 1


def test_other_team_licence_is_missing_from_lists(bob, gary, make_licence):
    make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    for client in (bob, gary):
        body = client.get(URL).json()
        assert body == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.parametrize("method", ["get", "delete"])
def test_other_team_licence_is_not_found(bob, gary, make_licence, method):
    licence = make_licence("acme", {"LM_LICENSE_FILE": "27000@lic"})

    for client in (bob, gary):
        response = getattr(client, method)(f"{URL}{licence.pk}/")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert Licence.objects.count() == 1


def test_create_lands_in_the_callers_team_only(carol, gary):
    carol.post(URL, licence_body(), format="json")

    assert gary.get(URL).json()["count"] == 0
    assert carol.get(URL).json()["count"] == 1


def test_team_header_selects_the_team_acted_in(carol, make_licence):
    other = Team.objects.create(name="initech")
    Membership.objects.create(user=carol.user, team=other, role=Role.USER)
    make_licence("initech", {"LM_LICENSE_FILE": "27000@lic"})

    response = carol.get(URL, HTTP_X_EPIC_TEAM=str(other.pk))

    assert response.json()["count"] == 1
    assert response.json()["results"][0]["environment"][0]["value"] == "********"
    assert carol.get(URL).json()["count"] == 0


@pytest.mark.parametrize("path", ["not-a-uuid/", "00000000-0000-0000-0000-000000000000/"])
def test_unknown_licence_id_is_not_found(carol, path):
    response = carol.get(URL + path)

    assert response.status_code == 404


def test_templates_list_every_application(alice, fluent):
    set_template(
        fluent,
        [
            {
                "variable_name": "ANSYSLMD_LICENSE_FILE",
                "help_text": "Licence server of FlexLM",
                "var_type": "server",
                "default": "1055@licences",
            },
            {"variable_name": "ANSYSLI_SERVERS", "help_text": "Licence interconnect"},
        ],
    )

    response = alice.get(f"{URL}templates/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == PAGE_FIELDS
    fluent_template = next(t for t in body["results"] if t["application"]["pk"] == fluent.pk)
    assert set(fluent_template) == TEMPLATE_FIELDS
    assert fluent_template == {
        "id": str(template_id(fluent.pk)),
        "application": {"pk": fluent.pk, "name": "Fluent"},
        "environment": [
            {
                "variable_name": "ANSYSLMD_LICENSE_FILE",
                "help_text": "Licence server of FlexLM",
                "var_type": "server",
                "default": "1055@licences",
            },
            {
                "variable_name": "ANSYSLI_SERVERS",
                "help_text": "Licence interconnect",
                "var_type": "string",
                "default": None,
            },
        ],
    }
    assert all(set(item) == ENV_VAR_TEMPLATE_FIELDS for item in fluent_template["environment"])


def test_templates_show_no_variables_for_an_application_without_template(alice, fluent):
    body = alice.get(f"{URL}templates/").json()

    listed = {item["application"]["name"]: item for item in body["results"]}
    assert listed["Fluent"]["environment"] == []
    assert listed["Fluent"]["id"] == str(template_id(fluent.pk))


def test_templates_are_paginated(alice, fluent):
    body = alice.get(f"{URL}templates/", {"limit": 1}).json()

    assert body["count"] >= 1
    assert len(body["results"]) == 1
