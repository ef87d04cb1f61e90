"""CSV export: RFC 4180 quoting, formula neutralisation, one line per customer with money in
columns per currency, tags and custom fields, chunked output."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from api.export import Currencies, Layout, csv_chunks, line_for, neutralise
from api.web import money

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def row(i: int = 0, **kw):
    start = NOW - timedelta(days=2)
    base = dict(customer_id=f"c_{i:032x}", name="Ana Silva", email="ana@example.com", phone="+351912345678",
                first_seen_at=NOW - timedelta(days=30), cancelled=1, no_shows=0, upcoming=1, past=1,
                last_appointment_at=start, next_appointment_at=NOW + timedelta(days=3), session_minutes=50,
                spend={"eur": 14000}, revenue={"eur": 12600}, refunded={}, archived=False)
    return SimpleNamespace(**{**base, **kw})


def test_formula_cells_get_an_apostrophe():
    for cell in ("=1+1", "+351912345678", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    for cell in ("Ana", "ana@example.com", "1 = 1", 5, -3):
        assert neutralise(cell) == cell


EUR_USD = Layout(("eur", "usd"), ("goal", "vip_since"))


def test_one_line_per_customer_with_money_per_currency_tags_and_fields():
    profile = SimpleNamespace(tags=["sleep clinic", "vip"], fields={"goal": "sleep", "other": 3, "vip_since": True})
    record = dict(zip(EUR_USD.columns, line_for(EUR_USD, row(), profile)))
    assert record["phone"] == "'+351912345678"
    assert (record["appointments"], record["upcoming"], record["past"], record["cancelled"]) == (2, 1, 1, 1)
    assert record["session_minutes"] == 50 and record["last_appointment_at"].endswith("Z")
    assert (record["total_spend_eur"], record["expert_revenue_eur"], record["refunded_eur"]) == (14000, 12600, 0)
    assert (record["total_spend_usd"], record["expert_revenue_usd"], record["refunded_usd"]) == (0, 0, 0)
    assert record["tags"] == "sleep clinic; vip" and record["archived"] == "false"
    assert (record["field_goal"], record["field_vip_since"]) == ("sleep", "true")  # only defined fields
    two = dict(zip(EUR_USD.columns, line_for(EUR_USD, row(spend={"eur": 100, "usd": 200}, archived=True,
                                                          revenue={"eur": 90, "usd": 180}, refunded={"usd": 5}))))
    assert [two[k] for k in ("total_spend_eur", "expert_revenue_eur", "total_spend_usd", "refunded_usd")] == \
        [100, 90, 200, 5]
    assert (two["tags"], two["field_goal"], two["archived"]) == ("", "", "true")


def test_the_columns_follow_the_currencies_found_and_the_fields_defined():
    found = Currencies()
    for r in (row(spend={"usd": 1}, revenue={}), row(spend={}, revenue={}, refunded={"gbp": 2}), row()):
        found.add(r)
    layout = Layout(found.sorted(), ("goal",))
    assert layout.columns[13:] == ["total_spend_eur", "expert_revenue_eur", "refunded_eur",
                                   "total_spend_gbp", "expert_revenue_gbp", "refunded_gbp",
                                   "total_spend_usd", "expert_revenue_usd", "refunded_usd",
                                   "archived", "tags", "field_goal"]
    assert Layout().columns[13:] == ["archived", "tags"]


async def test_chunks_are_valid_rfc4180():
    tricky = row(1, name='=HYPERLINK("http://x","Click"), "quoted"\nsecond line', phone=None)

    async def rows():
        for r in [tricky] + [row(i) for i in range(2, 500)]:
            yield r, SimpleNamespace(tags=["=cmd"], fields={})

    chunks = [c async for c in csv_chunks(EUR_USD, rows(), lines_per_chunk=100)]
    assert len(chunks) >= 5
    text = b"".join(chunks).decode()
    assert "\r\n" in text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == EUR_USD.columns and len(parsed) == 500
    assert parsed[1][1] == "'" + tricky.name and parsed[1][3] == ""
    assert parsed[1][EUR_USD.columns.index("tags")] == "'=cmd"


def test_money_is_exact_in_minor_units():
    assert money(14000, "eur") == "€140.00"
    assert money(123456789, "usd") == "$1,234,567.89"
    assert money(500, "jpy") == "¥500"
    assert money(1234, "kwd") == "KWD 1.234"
    assert money(-250, "gbp") == "−£2.50"
    assert money(None, "eur") == "—"
