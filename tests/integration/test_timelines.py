"""Notes and communications come in pages, newest first: the API's `limit` and `cursor`, the
detail's first page with the totals, and a bad cursor refused."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from testing import samples as s
from testing.harness import eventually, unique

NOW = datetime.now(timezone.utc).replace(microsecond=0)


async def _customer(stack) -> tuple[str, str]:
    expert = unique("ex_")
    booked = s.booking_created(expert, unique("m_"), "long@example.com", "Long Standing", NOW + timedelta(days=2))
    assert (await stack.post_bookings([booked])).status_code == 202

    async def found():
        body = (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()
        return body["customers"][0]["id"] if body["customers"] else None
    return expert, await eventually(found, timeout=60)


async def _walk(stack, expert: str, url: str, key: str, limit: int) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        r = await stack.api.get(url, params={"limit": limit, **({"cursor": cursor} if cursor else {})},
                                headers=stack.auth(expert))
        assert r.status_code == 200, r.text
        pages.append(r.json()[key])
        if not (cursor := r.json()["next_cursor"]):
            return pages


async def test_notes_and_communications_page_newest_first_and_the_detail_has_the_first_page(stack):
    expert, cid = await _customer(stack)
    auth = stack.auth(expert)
    posted = await asyncio.gather(*(stack.api.post(f"/api/customers/{cid}/notes", json={"body": f"note {i}"},
                                                   headers=auth) for i in range(25)))
    assert all(r.status_code in (201, 202) for r in posted)
    logged = await asyncio.gather(*(stack.api.post(
        f"/api/customers/{cid}/communications", headers=auth,
        json={"channel": "phone", "summary": f"call {i}", "at": (NOW - timedelta(hours=i)).isoformat()})
        for i in range(23)))
    assert all(r.status_code in (201, 202) for r in logged)

    async def settled():
        d = (await stack.api.get(f"/api/customers/{cid}", headers=auth)).json()
        return d if (d["notes_total"], d["communications_total"]) == (25, 23) else None
    detail = await eventually(settled, timeout=60)
    assert len(detail["notes"]) == 20 and len(detail["communications"]) == 20

    notes = await _walk(stack, expert, f"/api/customers/{cid}/notes", "notes", 10)
    assert [len(p) for p in notes] == [10, 10, 5]
    flat = [n for p in notes for n in p]
    assert len({n["id"] for n in flat}) == 25
    assert [(n["created_at"], n["id"]) for n in flat] == sorted(((n["created_at"], n["id"]) for n in flat),
                                                                reverse=True)
    assert detail["notes"] == flat[:20]

    comms = await _walk(stack, expert, f"/api/customers/{cid}/communications", "communications", 7)
    assert [len(p) for p in comms] == [7, 7, 7, 2]
    summaries = [c["summary"] for p in comms for c in p]
    assert summaries == [f"call {i}" for i in range(23)]  # newest first: call 0 is the latest
    assert detail["communications"] == [c for p in comms for c in p][:20]

    whole = (await stack.api.get(f"/api/customers/{cid}/notes", params={"limit": 100}, headers=auth)).json()
    assert len(whole["notes"]) == 25 and whole["next_cursor"] is None
    # a cursor of the notes is not one of the communications, nor is a forged one
    notes_cursor = (await stack.api.get(f"/api/customers/{cid}/notes", params={"limit": 1}, headers=auth)).json()
    for url, cursor in ((f"/api/customers/{cid}/communications", notes_cursor["next_cursor"]),
                        (f"/api/customers/{cid}/notes", "bm90IGEgY3Vyc29y")):
        r = await stack.api.get(url, params={"cursor": cursor}, headers=auth)
        assert r.status_code == 400 and "cursor" in r.text
    for limit in (0, 101):
        assert (await stack.api.get(f"/api/customers/{cid}/notes", params={"limit": limit},
                                    headers=auth)).status_code in (400, 422)
    # another expert's customer is not found, page or not
    other = stack.auth(unique("ex_"))
    assert (await stack.api.get(f"/api/customers/{cid}/communications", headers=other)).status_code == 404
