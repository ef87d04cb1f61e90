"""One customer's summary row as a plain mapping, from all of their meetings and payments.

The rule itself is `projections.rules.summaries.summary_of` (the batch path folds changes into
stored rows and falls back to it); this is the same figure in the shape the row stores, for
checks and tools that start from a whole history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from projections.meetings import Meeting
from projections.rules.summaries import ADDITIVE, MONEY, summary_of


def summarise(meetings: Iterable[Meeting], payments: Iterable[dict[str, Any]],
              as_of: datetime) -> dict[str, Any] | None:
    """The summary of one (expert, customer) as of `as_of`, or None when no booked meeting is left."""
    s = summary_of(meetings, payments, as_of)
    if s is None:
        return None
    return {"email": s.email, "name": s.name, "phone": s.phone, "search_text": s.search_text,
            "first_seen_at": s.first_seen_at, **{k: getattr(s, k) for k in ADDITIVE},
            "last_appointment_at": s.last_appointment_at, "next_appointment_at": s.next_appointment_at,
            "first_appointment_at": s.first_appointment_at,
            **{k: getattr(s, k) for k in MONEY}, "spend_sort": s.spend_sort}
