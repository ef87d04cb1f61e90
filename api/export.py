"""CSV export of an expert's customers: RFC 4180 (the csv module's quoting, CRLF line ends),
cells that a spreadsheet would run as a formula neutralised with a leading apostrophe.

One line per customer (a spreadsheet user counts rows as customers). Money is in columns per
currency the expert has, three per currency in the currencies' order (`total_spend_eur`,
`expert_revenue_eur`, `refunded_eur`, then the next currency's), integers in minor units, 0
where a customer has none of it. Then `archived`, `tags` (joined by "; ") and one column per
custom field the expert defines now, headed by the field's key, its value as the list filters
read it (`true`/`false`, numbers as written, dates YYYY-MM-DD), empty when unset.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Iterable

from customers.commands import canonical

PERSON = ["id", "name", "email", "phone", "first_seen_at", "last_appointment_at", "next_appointment_at",
          "appointments", "upcoming", "past", "cancelled", "no_shows", "session_minutes"]
MONEY = ("total_spend", "expert_revenue", "refunded")  # per currency
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Layout:
    """The columns of one export: the currencies the expert has and the fields they define."""

    currencies: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        money = [f"{kind}_{cur}" for cur in self.currencies for kind in MONEY]
        return PERSON + money + ["archived", "tags"] + [f"field_{key}" for key in self.fields]


@dataclass
class Currencies:
    """Collects the currencies of rows' money columns, in a stable order."""

    found: set[str] = field(default_factory=set)

    def add(self, row) -> None:
        self.found |= set(row.spend) | set(row.revenue) | set(row.refunded)

    def sorted(self) -> tuple[str, ...]:
        return tuple(sorted(self.found))


def neutralise(cell: Any) -> Any:
    """A text cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) gets a `'` in front."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def _time(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def line_for(layout: Layout, row, profile=None) -> list[Any]:
    """The CSV line of one customer summary row (counted as of the last sweep, as the list)."""
    person = [row.customer_id, row.name, row.email, row.phone or "", _time(row.first_seen_at),
              _time(row.last_appointment_at), _time(row.next_appointment_at),
              row.upcoming + row.past, row.upcoming, row.past, row.cancelled, row.no_shows,
              row.session_minutes]
    by_kind = {"total_spend": row.spend, "expert_revenue": row.revenue, "refunded": row.refunded}
    money = [by_kind[kind].get(cur, 0) for cur in layout.currencies for kind in MONEY]
    values = dict(profile.fields) if profile is not None else {}
    tags = "; ".join(profile.tags) if profile is not None else ""
    fields = [canonical(values[key]) if key in values else "" for key in layout.fields]
    return [neutralise(c) for c in person + money + ["true" if row.archived else "false", tags] + fields]


def _render(lines: Iterable[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)  # QUOTE_MINIMAL, "\r\n"
    return buffer.getvalue()


async def csv_chunks(layout: Layout, rows: AsyncIterator, lines_per_chunk: int = 200) -> AsyncIterator[bytes]:
    """The header, then the customers' lines in chunks: memory stays flat however many there are.
    `rows` yields (summary row, profile or None)."""
    yield _render([layout.columns]).encode()
    pending: list[list[Any]] = []
    async for row, profile in rows:
        pending.append(line_for(layout, row, profile))
        if len(pending) >= lines_per_chunk:
            yield _render(pending).encode()
            pending = []
    if pending:
        yield _render(pending).encode()
