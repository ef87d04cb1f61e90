"""Stripe events that are not for this deployment (the other mode, or a connected account on an
endpoint that is not a Connect endpoint) are refused at the door, logged and counted."""

from __future__ import annotations

import logging

import pytest

from testing import samples as s
from customers.settings import Settings
from tests.unit.test_intake_guards import Intake, intent_event

PRODUCTION = dict(environment="production", auth_jwt_secret="j" * 40, auth_jwt_audience="customers",
                  ingest_token="i" * 40, stripe_webhook_secret="whsec_" + "w" * 40, customer_id_secret="c" * 40,
                  database_url="postgresql+asyncpg://customers:" + "p" * 24 + "@db.internal/customers")  # not the shell's


def test_the_mode_follows_the_environment_unless_set():
    assert Settings(environment="test").livemode is False
    assert Settings(**PRODUCTION).livemode is True
    assert Settings(**PRODUCTION, stripe_livemode=False).livemode is False
    assert Settings(environment="local", stripe_livemode=True).livemode is True


@pytest.mark.parametrize("livemode", [True])
async def test_an_event_of_the_other_mode_is_refused_and_counted(livemode, caplog):
    intake = Intake()  # test environment: test mode
    event = intent_event()
    event["livemode"] = livemode
    with caplog.at_level(logging.WARNING, logger="customers.webhooks"):
        r = await intake.stripe(event)
    assert r.status_code == 400 and "STRIPE_LIVEMODE" in r.json()["detail"]
    assert intake.producer.sent == []
    assert any(event["id"] in m and "live-mode" in m for m in caplog.messages)
    metrics = (await intake.client().get("/metrics")).text
    assert 'customers_stripe_events_refused_total{reason="livemode"} 1.0' in metrics


async def test_a_live_deployment_refuses_test_events():
    intake = Intake(stripe_livemode=True)
    assert (await intake.stripe(intent_event())).status_code == 400
    live = intent_event()
    live["livemode"] = True
    assert (await intake.stripe(live)).status_code == 200
    assert len(intake.producer.sent) == 1


MISSING = object()


@pytest.mark.parametrize("deployment", [True, False])
@pytest.mark.parametrize("livemode", [MISSING, None, "false", "true", 0, 1, "", []])
async def test_an_event_without_a_boolean_livemode_is_refused(deployment, livemode):
    """Only the expected boolean passes: a missing, textual or numeric `livemode` says no mode at all."""
    intake = Intake(stripe_livemode=deployment)
    event = intent_event()
    del event["livemode"]
    if livemode is not MISSING:
        event["livemode"] = livemode
    r = await intake.stripe(event)
    assert r.status_code == 400 and "livemode" in r.json()["detail"] and "STRIPE_LIVEMODE" in r.json()["detail"]
    assert intake.producer.sent == []
    event["livemode"] = deployment
    assert (await intake.stripe(event)).status_code == 200 and len(intake.producer.sent) == 1


async def test_a_connected_account_event_needs_a_connect_endpoint():
    event = intent_event()
    event["account"] = "acct_someone"
    plain = Intake()
    r = await plain.stripe(event)
    assert r.status_code == 400 and "STRIPE_CONNECT_ENDPOINT" in r.json()["detail"]
    assert plain.producer.sent == []
    connect = Intake(stripe_connect_endpoint=True)
    assert (await connect.stripe(event)).status_code == 200
    assert len(connect.producer.sent) == 1


async def test_an_event_the_payment_rules_cannot_read_is_refused_not_dead_lettered():
    dispute = s.dispute("dp_1", "ch_1", "pi_1", 1000, "needs_response")
    dispute["status"] = "a_status_stripe_adds_later"
    intake = Intake()
    r = await intake.stripe(s.stripe_event("charge.dispute.created", dispute))
    assert r.status_code == 400 and "dispute" in r.json()["detail"]
    assert intake.producer.sent == []
