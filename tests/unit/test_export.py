"""CSV export: RFC 4180 quoting, formula neutralisation, one line per currency, chunked output."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from api.export import COLUMNS, csv_chunks, lines_for, neutralise
from api.web import money

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def row(i: int = 0, **kw):
    start = NOW - timedelta(days=2)
    base = dict(customer_id=f"c_{i:032x}", name="Ana Silva", email="ana@example.com", phone="+351912345678",
                first_seen_at=NOW - timedelta(days=30), cancelled=1, no_shows=0, upcoming=1, past=1,
                last_appointment_at=start, next_appointment_at=NOW + timedelta(days=3), session_minutes=50,
                spend={"eur": 14000}, revenue={"eur": 12600}, refunded={})
    return SimpleNamespace(**{**base, **kw})


def test_formula_cells_get_an_apostrophe():
    for cell in ("=1+1", "+351912345678", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    for cell in ("Ana", "ana@example.com", "1 = 1", 5, -3):
        assert neutralise(cell) == cell


def test_one_line_per_currency_with_the_stored_figures():
    line = lines_for(row())
    assert len(line) == 1
    record = dict(zip(COLUMNS, line[0]))
    assert record["phone"] == "'+351912345678"
    assert (record["appointments"], record["upcoming"], record["past"], record["cancelled"]) == (2, 1, 1, 1)
    assert record["session_minutes"] == 50 and record["currency"] == "eur" and record["total_spend"] == 14000
    assert record["last_appointment_at"].endswith("Z")
    two = lines_for(row(spend={"eur": 100, "usd": 200}, revenue={"eur": 90, "usd": 180}))
    assert [(r[13], r[14], r[15]) for r in two] == [("eur", 100, 90), ("usd", 200, 180)]
    assert lines_for(row(spend={}, revenue={}))[0][13:] == ["", 0, 0, 0]


async def test_chunks_are_valid_rfc4180():
    tricky = row(1, name='=HYPERLINK("http://x","Click"), "quoted"\nsecond line', phone=None)

    async def rows():
        for r in [tricky] + [row(i) for i in range(2, 500)]:
            yield r

    chunks = [c async for c in csv_chunks(rows(), lines_per_chunk=100)]
    assert len(chunks) >= 5
    text = b"".join(chunks).decode()
    assert "\r\n" in text
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == COLUMNS and len(parsed) == 500
    assert parsed[1][1] == "'" + tricky.name and parsed[1][3] == ""


def test_money_is_exact_in_minor_units():
    assert money(14000, "eur") == "€140.00"
    assert money(123456789, "usd") == "$1,234,567.89"
    assert money(500, "jpy") == "¥500"
    assert money(1234, "kwd") == "KWD 1.234"
    assert money(-250, "gbp") == "−£2.50"
    assert money(None, "eur") == "—"
