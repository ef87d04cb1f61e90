"""The running API (uvicorn, real Kafka and PostgreSQL) against its own OpenAPI schema, with the
tokens of two experts: no server errors, every response as documented. Then, with real ids,
neither expert sees the other's customers. The intake, likewise, against its own schema."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from testing import samples as s
from customers.settings import Settings
from testing.harness import eventually, unique
from tests.integration.conftest import open_stack
from tests.servers import ApiProcess, IntakeProcess

NOW = datetime.now(timezone.utc).replace(microsecond=0)


class Running:
    def __init__(self, stack, api: ApiProcess, experts: dict[str, list[str]]) -> None:
        self.stack, self.api, self.experts = stack, api, experts  # expert -> their customer ids

    def auth(self, expert: str) -> dict:
        return self.stack.auth(expert)


@pytest.fixture(scope="module")
async def running():
    async with open_stack("postgresql") as stack:
        a, b = unique("ex_"), unique("ex_")
        events = [s.booking_created(expert, unique("m_"), f"{who}@example.com", who.title(),
                                    NOW + timedelta(days=i - 2))
                  for expert, people in ((a, ["ana", "bruno", "carla"]), (b, ["ana", "dora"]))
                  for i, who in enumerate(people)]
        assert (await stack.post_bookings(events)).status_code == 202

        async def ids(expert, n):
            body = (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()
            return [c["id"] for c in body["customers"]] if body["total"] == n else None

        experts = {a: await eventually(lambda: ids(a, 3)), b: await eventually(lambda: ids(b, 2))}
        with ApiProcess(stack.settings, name="api-schema") as api, \
                IntakeProcess(stack.settings, name="intake-schema") as intake:
            running = Running(stack, api, experts)
            running.intake = intake
            yield running


def openapi() -> dict:
    """The app's schema, built without I/O so that tests can be generated at collection time."""
    from api.app import create_app

    return create_app(Settings(environment="test", auth_jwt_secret="schema-only",
                               database_url="sqlite+aiosqlite:///:memory:")).openapi()


# A cursor is valid only when the server issued it: a schema-valid forged one is a 400. A query
# parameter generated as a non-string "negative" value reaches the server as an empty string,
# which is valid, so negative-data rejection is not asked of the list here; the list's refusals of
# bad query strings are tested one by one in tests/integration/test_api_customers.py.
# Custom fields, tags and field values are checked against rules a JSON schema cannot state
# (distinct keys, choices only for a choice field, a value fitting the definition stored for its
# key, a tag still 1-40 characters once trimmed): a schema-valid body may be a documented 422.
# A month range is at most 36 months, `from` before `to`: a schema-valid pair may be a 400. A logged
# contact's summary needs visible text, which the schema's pattern states in another regex dialect.
CROSS_FIELD = ["2xx", "400", "401", "403", "404", "422"]
CONFIG = SchemathesisConfig.from_dict({"operations": [{
    "include-path": "/api/customers", "include-method": "GET",
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404"]},
               "negative_data_rejection": {"enabled": False}},
}, *({"include-path": path, "include-method": method,
      "checks": {"positive_data_acceptance": {"expected-statuses": CROSS_FIELD}}}
     for path, method in (("/api/custom-fields", "PUT"), ("/api/customers/{customer_id}/fields", "PUT"),
                          ("/api/customers/{customer_id}/tags", "PUT"), ("/api/insights", "GET"),
                          # a summary of blanks only: JSON Schema's \s is not Python's (U+0085, U+00A0...)
                          ("/api/customers/{customer_id}/communications", "POST"),
                          ("/api/insights/export.csv", "GET")))]})
schema = schemathesis.openapi.from_dict(openapi(), config=CONFIG)


def intake_openapi() -> dict:
    from webhooks.app import create_app as create_intake

    return create_intake(Settings(environment="test", ingest_token="schema-only",
                                  stripe_webhook_secret="whsec_schema_only")).openapi()


# Schema-valid bookings may still be refused for what a schema cannot say (an unknown time zone,
# an end before its start, NUL); unsigned Stripe events are refused. Booking fields are read as
# pydantic reads them (`"7000"` is an amount, a Unix time is a time), so not every body outside
# the schema is refused.
INTAKE_CONFIG = SchemathesisConfig.from_dict({"operations": [{
    "include-method": "POST",
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "413", "422"]},
               "negative_data_rejection": {"enabled": False}},
}]})
intake_schema = schemathesis.openapi.from_dict(intake_openapi(), config=INTAKE_CONFIG)


@pytest.fixture(scope="module")
def served_intake_schema(running):
    served = httpx.get(f"{running.intake.url}/openapi.json").json()
    assert served == intake_schema.raw_schema
    return intake_schema


@intake_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_intake_matches_its_schema(case, running, served_intake_schema):
    token = {"Authorization": f"Bearer {running.stack.settings.ingest_token}"}
    case.call_and_validate(base_url=running.intake.url, headers=token)


@pytest.fixture(scope="module")
def api_schema(running):
    served = httpx.get(f"{running.api.url}/openapi.json").json()
    assert served == schema.raw_schema  # what is fuzzed is what the running app publishes
    return schema


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case, running, api_schema):
    for expert in running.experts:
        case.call_and_validate(base_url=running.api.url, headers=running.auth(expert))


def test_real_customers_match_the_schema_too(api_schema, running):
    for expert, ids in running.experts.items():
        for cid in ids:
            for path in ("/api/customers/{customer_id}", "/api/customers/{customer_id}/notes"):
                case = api_schema[path]["GET"].Case(path_parameters={"customer_id": cid})
                r = case.call_and_validate(base_url=running.api.url, headers=running.auth(expert))
                assert r.status_code == 200


async def test_neither_expert_sees_the_other(running):
    (a, mine), (b, theirs) = running.experts.items()
    async with httpx.AsyncClient(base_url=running.api.url, timeout=30) as client:
        for expert, own, other in ((a, mine, theirs), (b, theirs, mine)):
            body = (await client.get("/api/customers", headers=running.auth(expert))).json()
            assert body["total"] == len(own) and sorted(c["id"] for c in body["customers"]) == sorted(own)
            unknown = await client.get("/api/customers/c_" + "0" * 32, headers=running.auth(expert))
            for cid in other:
                for path in (f"/api/customers/{cid}", f"/api/customers/{cid}/notes"):
                    r = await client.get(path, headers=running.auth(expert))
                    assert r.status_code == 404 and r.json() == unknown.json()
                r = await client.post(f"/api/customers/{cid}/notes", json={"body": "x"},
                                      headers=running.auth(expert))
                assert r.status_code == 404
            csv = (await client.get("/api/customers/export.csv", headers=running.auth(expert))).text
            assert all(cid not in csv for cid in other) and all(cid in csv for cid in own)
        # the same email with both experts is two different customers
        ana_a = (await client.get("/api/customers", params={"email": "ana@example.com"},
                                  headers=running.auth(a))).json()["customers"][0]["id"]
        ana_b = (await client.get("/api/customers", params={"email": "ana@example.com"},
                                  headers=running.auth(b))).json()["customers"][0]["id"]
        assert ana_a != ana_b
