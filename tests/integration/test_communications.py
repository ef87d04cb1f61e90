"""Communications through the real intake, broker and worker: the platform's `message.sent`
events, the email provider's delivery reports (Svix-signed with the `svix` package's own
signing), and the contacts an expert logs. Reports and messages shuffled and duplicated give the
timeline an independent reading gives; a bad or old signature is a 400 with nothing published;
the list sorts by the last contact; an erasure removes every communication and its reports."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from svix.webhooks import Webhook

from customers import kafka as names
from testing import samples as s
from projections import tables as t
from projections.db import make_engine
from testing.harness import RESEND_SECRET, eventually, unique
from tests.integration.test_api_notes import Api
from tests.kafka_read import read_all

NOW = datetime.now(timezone.utc).replace(microsecond=0)
ORDER = ("sent", "delayed", "delivered", "opened", "clicked")
PROVIDER = {"sent": "email.sent", "delayed": "email.delivery_delayed", "delivered": "email.delivered",
            "opened": "email.opened", "clicked": "email.clicked", "bounced": "email.bounced",
            "complained": "email.complained", "failed": "email.failed"}


def expected_status(reports: set[str]) -> str:
    """An independent reading of the contract: bounced and complained (and failed) win, else the furthest."""
    for problem in ("complained", "bounced", "failed"):
        if problem in reports:
            return problem
    return max(reports, key=ORDER.index) if reports else "sent"


def message(expert: str, email: str, n: int, provider_id: str | None, *, meeting: str | None = None) -> dict:
    return {"type": "message.sent", "event_id": f"msg-{expert}-{n}", "schema_version": 1, "expert_id": expert,
            "customer": {"email": email}, "meeting_id": meeting, "channel": "email",
            "kind": ["confirmation", "reminder", "receipt", "follow_up"][n % 4], "subject": f"Message {n}",
            "provider_message_id": provider_id, "occurred_at": (NOW - timedelta(hours=10 - n)).isoformat()}


def report(provider_id: str, status: str, minute: int) -> bytes:
    return json.dumps({"type": PROVIDER[status], "created_at": (NOW - timedelta(minutes=60 - minute)).isoformat(),
                       "data": {"email_id": provider_id, "to": ["someone@example.com"], "subject": "x"}}).encode()


def signed(body: bytes, *, secret: str = RESEND_SECRET, when: datetime | None = None,
           msg_id: str | None = None) -> dict:
    msg_id = msg_id or unique("msg_")
    when = when or datetime.now(timezone.utc)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(int(when.timestamp())), "svix-signature": signature,
            "content-type": "application/json"}


class World:
    def __init__(self, stack, api) -> None:
        self.stack, self.api = stack, api

    async def messages(self, events) -> None:
        r = await self.stack.intake.post("/events/messages", json=events,
                                         headers={"Authorization": f"Bearer {self.stack.settings.ingest_token}"})
        assert r.status_code == 202, r.text

    async def resend(self, body: bytes, **kw):
        return await self.stack.intake.post("/webhooks/resend", content=body, headers=signed(body, **kw))

    async def customer(self, expert: str, email: str):
        found = (await self.api.client.get(f"/api/customers?email={email}",
                                           headers=self.stack.auth(expert))).json()["customers"]
        return found[0]["id"] if found else None

    async def detail(self, expert: str, cid: str) -> dict:
        return (await self.api.client.get(f"/api/customers/{cid}", headers=self.stack.auth(expert))).json()


@pytest.fixture(scope="module")
async def world(stack):
    async with Api(stack.settings.model_copy(update={"notes_visible_wait_seconds": 15})) as api:
        yield World(stack, api)


async def test_messages_and_reports_in_any_order_and_any_number_give_the_same_timeline(world):
    rng = random.Random(7)
    experts = [unique("ex_"), unique("ex_")]
    plans: dict[str, set[str]] = {}
    for n in range(8):
        chosen = set(rng.sample(list(ORDER), rng.randint(0, 3)))
        if n in (2, 5):
            chosen.add(rng.choice(["bounced", "complained"]))
        plans[f"re_{n}_{unique('')}"] = chosen
    bookings, per_expert_messages, reports = [], {}, []
    for expert in experts:
        bookings.append(s.booking_created(expert, unique("m_"), "ana@example.com", "Ana Silva", NOW + timedelta(days=2)))
        per_expert_messages[expert] = []
    for n, (pid, chosen) in enumerate(plans.items()):
        for e, expert in enumerate(experts):
            own = f"{pid}_{e}"
            per_expert_messages[expert].append(message(expert, "ana@example.com", n, own))
            reports += [report(own, status, minute) for minute, status in enumerate(sorted(chosen, key=str))]
    # the first expert: messages first, then reports in order; the second: all shuffled, twice over
    assert (await world.stack.post_bookings(bookings)).status_code == 202
    await world.messages(per_expert_messages[experts[0]])
    first = [r for r in reports if b"_0\"" in r]
    second = [r for r in reports if b"_1\"" in r]
    for body in first:
        assert (await world.resend(body)).status_code == 200
    mixed = [("report", b) for b in second * 2] + [("message", m) for m in per_expert_messages[experts[1]] * 2]
    rng.shuffle(mixed)
    for kind, item in mixed:
        if kind == "report":
            assert (await world.resend(item)).status_code == 200
        else:
            await world.messages([item])

    async def timelines():
        out = []
        for expert in experts:
            cid = await world.customer(expert, "ana@example.com")
            if cid is None:
                return None
            comms = (await world.detail(expert, cid))["communications"]
            if len(comms) < len(plans):
                return None
            out.append([(c["subject"], c["status"]) for c in comms])
        want = [(f"Message {n}", expected_status(chosen)) for n, chosen in enumerate(plans.values())]
        want.reverse()  # newest first
        return out if out == [want, want] else None

    assert await eventually(timelines, timeout=60)
    cid = await world.customer(experts[0], "ana@example.com")
    detail = await world.detail(experts[0], cid)
    newest = detail["communications"][0]
    assert newest["source"] == "platform" and newest["channel"] == "email" and newest["kind"]
    assert set(newest) >= {"id", "channel", "kind", "subject", "at", "status", "meeting_id", "source"}
    assert detail["last_contact_at"] == newest["at"]


async def test_a_bad_or_old_signature_is_a_400_and_nothing_is_published(world):
    topic = world.stack.settings.topic("email-events")
    before = len(await read_all(world.stack.settings.kafka_bootstrap_servers, topic))
    body = report("re_bad", "delivered", 1)
    other = "whsec_" + "b3RoZXItc2VjcmV0LWtleS0wMTIzNDU2Nzg5"
    for headers in (signed(body, secret=other), signed(body, when=datetime.now(timezone.utc) - timedelta(minutes=10)),
                    {k: v for k, v in signed(body).items() if k != "svix-signature"}):
        r = await world.stack.intake.post("/webhooks/resend", content=body, headers=headers)
        assert r.status_code == 400, r.text
    tampered = signed(body)
    r = await world.stack.intake.post("/webhooks/resend", content=body.replace(b"re_bad", b"re_bad2"), headers=tampered)
    assert r.status_code == 400
    r = await world.resend(json.dumps({"type": "email.delivered", "created_at": NOW.isoformat(), "data": {}}).encode())
    assert r.status_code == 400 and "email_id" in r.text  # a report the read model cannot store
    ignored = await world.resend(json.dumps({"type": "contact.created", "created_at": NOW.isoformat(),
                                             "data": {"id": "x"}}).encode())
    assert ignored.status_code == 200 and ignored.json()["published"] is False
    assert len(await read_all(world.stack.settings.kafka_bootstrap_servers, topic)) == before


async def test_message_events_are_checked_at_the_door(world):
    token = {"Authorization": f"Bearer {world.stack.settings.ingest_token}"}
    good = message(unique("ex_"), "ana@example.com", 1, None)
    assert (await world.stack.intake.post("/events/messages", json=good)).status_code == 401
    for field, value in (("channel", "pigeon"), ("kind", "spam"), ("occurred_at", "yesterday"),
                         ("subject", "x" * 301)):
        r = await world.stack.intake.post("/events/messages", json=[good, {**good, field: value}], headers=token)
        assert r.status_code == 422 and field in r.text, r.text
    r = await world.stack.intake.post("/events/messages", json={**good, "customer": {"email": "nope"}}, headers=token)
    assert r.status_code == 422 and "email" in r.text


async def test_the_expert_logs_a_contact_and_the_list_sorts_by_the_last_contact(world):
    expert = unique("ex_")
    people = ["ana@example.com", "bea@example.com", "caio@example.com"]
    assert (await world.stack.post_bookings([s.booking_created(expert, unique("m_"), p, p.split("@")[0].title(),
                                                               NOW + timedelta(days=2)) for p in people])).status_code == 202
    ids = {p: await eventually(lambda p=p: world.customer(expert, p)) for p in people}
    auth = world.stack.auth(expert)
    r = await world.api.client.post(f"/api/customers/{ids['bea@example.com']}/communications", headers=auth,
                                    json={"channel": "phone", "summary": " Called about the invoice ",
                                          "at": (NOW - timedelta(hours=1)).isoformat()})
    assert r.status_code == 201, r.text
    logged = r.json()
    assert (logged["source"], logged["channel"], logged["summary"], logged["status"]) == \
        ("expert", "phone", "Called about the invoice", None)
    assert (await world.api.client.get(r.headers["location"], headers=auth)).json() == logged
    await world.messages([message(expert, "caio@example.com", 3, None)])  # NOW - 7 h
    for bad in ({"channel": "fax", "summary": "x", "at": NOW.isoformat()},
                {"channel": "phone", "summary": "", "at": NOW.isoformat()},
                {"channel": "phone", "summary": "x", "at": "2026-01-01T10:00:00"}):
        assert (await world.api.client.post(f"/api/customers/{ids['bea@example.com']}/communications", headers=auth,
                                            json=bad)).status_code == 422
    other = unique("ex_")
    r = await world.api.client.post(f"/api/customers/{ids['bea@example.com']}/communications",
                                    headers=world.stack.auth(other), json={"channel": "phone", "summary": "x",
                                                                           "at": NOW.isoformat()})
    assert r.status_code == 404

    async def order():
        body = (await world.api.client.get("/api/customers?sort=last_contact", headers=auth)).json()
        got = [c["email"] for c in body["customers"]]
        return got if got == ["bea@example.com", "caio@example.com", "ana@example.com"] else None
    assert await eventually(order)
    asc = (await world.api.client.get("/api/customers?sort=last_contact&order=asc", headers=auth)).json()
    assert [c["email"] for c in asc["customers"]] == ["ana@example.com", "caio@example.com", "bea@example.com"]
    page = (await world.api.client.get("/api/customers?sort=last_contact&limit=1", headers=auth)).json()
    rest = (await world.api.client.get(f"/api/customers?sort=last_contact&limit=5&cursor={page['next_cursor']}",
                                       headers=auth)).json()
    assert [c["email"] for c in page["customers"] + rest["customers"]] == \
        ["bea@example.com", "caio@example.com", "ana@example.com"]


async def test_an_erasure_removes_every_communication_and_its_reports(world):
    expert, person = unique("ex_"), f"{unique('gone')}@example.com"
    pid = unique("re_")
    assert (await world.stack.post_bookings([s.booking_created(expert, unique("m_"), person, "Gone",
                                                               NOW + timedelta(days=2))])).status_code == 202
    await world.messages([message(expert, person, 1, pid)])
    assert (await world.resend(report(pid, "delivered", 1))).status_code == 200
    cid = await eventually(lambda: world.customer(expert, person))
    r = await world.api.client.post(f"/api/customers/{cid}/communications", headers=world.stack.auth(expert),
                                    json={"channel": "in_person", "summary": "met", "at": NOW.isoformat()})
    assert r.status_code == 201
    assert await eventually(lambda: _counts(world, cid, pid, (2, 1)))
    r = await world.api.client.post("/admin/erasures", json={"email": person},
                                    headers=world.stack.auth("ops", roles=["admin"]))
    assert r.status_code == 202
    assert await eventually(lambda: _counts(world, cid, pid, (0, 0)))
    # a late report of the erased message stays out: once the worker is past it, still nothing
    assert (await world.resend(report(pid, "opened", 2))).status_code == 200
    topic = world.stack.settings.topic("email-events")
    ends = await names.end_offsets(world.stack.settings, [topic])
    assert await eventually(lambda: _applied_to(world, ends))
    assert await _counts(world, cid, pid, (0, 0))


async def _counts(world, cid: str, pid: str, want: tuple[int, int]):
    """(communications of the customer, report rows of the email id) == want, else None."""
    engine = make_engine(world.stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            comms = (await conn.execute(select(func.count()).select_from(t.communications).where(
                t.communications.c.customer_id == cid))).scalar()
            reports = (await conn.execute(select(func.count()).select_from(t.email_reports).where(
                t.email_reports.c.email_id == pid))).scalar()
    finally:
        await engine.dispose()
    return (comms, reports) == want or None


async def _applied_to(world, ends: dict) -> bool | None:
    engine = make_engine(world.stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            o = t.projection_offsets.c
            stored = {(r.topic, r.partition): r.offset for r in await conn.execute(select(o.topic, o.partition, o.offset))}
    finally:
        await engine.dispose()
    return all(stored.get(tp, -1) + 1 >= end for tp, end in ends.items() if end) or None


async def test_a_report_is_published_without_its_recipient_sender_or_subject(world):
    email_id = unique("re_private_")
    body = json.dumps({"type": "email.delivered", "created_at": NOW.isoformat(),
                       "data": {"email_id": email_id, "to": ["ana.private@example.com"], "from": "clinic@example.com",
                                "subject": "Your results, Ana"}}).encode()
    r = await world.resend(body)
    assert r.status_code == 200 and r.json()["published"] is True
    records = await read_all(world.stack.settings.kafka_bootstrap_servers, world.stack.settings.topic("email-events"))
    [published] = [r.value for r in records if email_id.encode() in r.value]
    out = json.loads(published)
    assert out == {"type": "email.delivered", "created_at": out["created_at"], "data": {"email_id": email_id}}
    assert datetime.fromisoformat(out["created_at"].replace("Z", "+00:00")) == NOW
    assert b"example.com" not in published and b"Ana" not in published
