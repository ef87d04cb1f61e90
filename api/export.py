"""CSV export of an expert's customers: RFC 4180 (the csv module's quoting, CRLF line ends),
cells that a spreadsheet would run as a formula neutralised with a leading apostrophe.

One line per customer and currency (a customer who paid in two currencies has two lines;
one without payments has one line with an empty currency). Amounts are integers in minor units.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, AsyncIterator, Iterable

COLUMNS = ["id", "name", "email", "phone", "first_seen_at", "last_appointment_at", "next_appointment_at",
           "appointments", "upcoming", "past", "cancelled", "no_shows", "session_minutes",
           "currency", "total_spend", "expert_revenue", "refunded"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> Any:
    """A text cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) gets a `'` in front."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def _time(value: datetime | None) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


def lines_for(row) -> list[list[Any]]:
    """The CSV lines of one customer summary row (counted as of the last sweep, as the list)."""
    person = [row.customer_id, row.name, row.email, row.phone or "", _time(row.first_seen_at),
              _time(row.last_appointment_at), _time(row.next_appointment_at),
              row.upcoming + row.past, row.upcoming, row.past, row.cancelled, row.no_shows,
              row.session_minutes]
    currencies = sorted(set(row.spend) | set(row.revenue) | set(row.refunded)) or [""]
    return [[neutralise(c) for c in person + [cur, row.spend.get(cur, 0), row.revenue.get(cur, 0),
                                                row.refunded.get(cur, 0)]]
            for cur in currencies]


def _render(lines: Iterable[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(lines)  # QUOTE_MINIMAL, "\r\n"
    return buffer.getvalue()


async def csv_chunks(rows: AsyncIterator, lines_per_chunk: int = 200) -> AsyncIterator[bytes]:
    """The header, then the customers' lines in chunks: memory stays flat however many there are."""
    yield _render([COLUMNS]).encode()
    pending: list[list[Any]] = []
    async for row in rows:
        pending.extend(lines_for(row))
        if len(pending) >= lines_per_chunk:
            yield _render(pending).encode()
            pending = []
    if pending:
        yield _render(pending).encode()
