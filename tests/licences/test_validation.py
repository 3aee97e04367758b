"""Bad licences are refused with a 400 naming the field, and nothing is stored."""

import pytest

from epic.licences.models import Licence
from tests.licences.bodies import URL, licence_body, variables

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 31}, "display_name"),
        ({"display_name": 7}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": "a\x00b"}, "display_name"),
        ({"description": ""}, "description"),
        ({"description": ["text"]}, "description"),
        ({"description": "x" * 1001}, "description"),
        ({"environment": None}, "environment"),
        ({"environment": "LM_LICENSE_FILE=1@x"}, "environment"),
        ({"environment": {"variable_name": "A", "value": "b"}}, "environment"),
        ({"environment": []}, "environment"),
        ({"environment": ["A=b"]}, "environment"),
        ({"environment": [{"variable_name": "A"}]}, "environment"),
        ({"environment": [{"value": "b"}]}, "environment"),
        ({"environment": variables(("A", 5))}, "environment"),
        ({"environment": variables((5, "b"))}, "environment"),
        ({"environment": variables(("A", ""))}, "environment"),
        ({"environment": variables(("A", "x" * 301))}, "environment"),
        ({"environment": variables(("A", "a\x00b"))}, "environment"),
        ({"environment": variables(("A", "one"), ("A", "two"))}, "environment"),
        ({"environment": variables(*((f"V{n}", "x") for n in range(65)))}, "environment"),
        ({"application": 999_999}, "application"),
        ({"application": "1"}, "application"),
        ({"application": True}, "application"),
        ({"application": 1.5}, "application"),
        ({"application": 0}, "application"),
        ({"application": 2**70}, "application"),
    ],
)
def test_bad_field_is_refused_naming_it(carol, changes, field):
    response = carol.post(URL, licence_body(**changes), format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert Licence.objects.count() == 0


@pytest.mark.parametrize("field", ["display_name", "environment"])
def test_missing_required_field_is_refused_naming_it(carol, field):
    body = licence_body()
    del body[field]

    response = carol.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert Licence.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1ABC",
        "A-B",
        "A B",
        "A=B",
        "ÄRGER",
        "A\nB",
        "A" * 129,
        "PATH",
        "path",
        "HOME",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "OMPI_MCA_plm",
        "SLURM_JOB_ID",
        "EPIC_HOME",
        "epic_token",
        "BASH_FUNC_x%%",
        "AWS_SECRET_ACCESS_KEY",
    ],
)
def test_bad_variable_name_is_refused_naming_it(carol, name):
    body = licence_body(environment=variables((name, "27000@lic")))

    response = carol.post(URL, body, format="json")

    assert response.status_code == 400
    assert set(response.json()["environment"]["0"]) == {"variable_name"}
    assert Licence.objects.count() == 0


@pytest.mark.parametrize("name", ["A", "_", "LM_LICENSE_FILE", "x" * 128, "MY_PATH", "Z9_"])
def test_good_variable_name_is_accepted(carol, name):
    body = licence_body(environment=variables((name, "27000@lic")))

    response = carol.post(URL, body, format="json")

    assert response.status_code == 201


def test_longest_allowed_value_and_most_variables_are_accepted(carol):
    environment = variables(*((f"V{n}", "x" * 300) for n in range(64)))

    response = carol.post(URL, licence_body(environment=environment), format="json")

    assert response.status_code == 201
    assert len(Licence.objects.get().environment) == 64


def test_value_keeps_its_whitespace(carol):
    body = licence_body(environment=variables(("KEY", "  spaced  ")))

    carol.post(URL, body, format="json")

    assert Licence.objects.get().variables == {"KEY": "  spaced  "}


@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_body_that_is_not_an_object_is_refused(carol, body):
    response = carol.post(URL, body, format="json")

    assert response.status_code == 400
    assert Licence.objects.count() == 0


def test_non_json_body_is_refused(carol):
    response = carol.post(URL, "display_name=x", content_type="text/plain")

    assert response.status_code == 415
    assert Licence.objects.count() == 0
