"""List cursors: opaque, tied to their query, and checked before any SQL sees their values."""

from datetime import datetime, timezone
from types import SimpleNamespace

import base64
import json

import pytest

from projections.queries import AFTER, BEFORE, BadCursor, ListQuery, decode_cursor, encode_cursor


def row(**values):
    return SimpleNamespace(_mapping=values, customer_id=values["customer_id"])


def forge(*parts) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def test_round_trip_for_each_kind_of_sort_key():
    when = datetime(2026, 1, 4, 10, tzinfo=timezone.utc)
    cases = [("last_appointment", "last_appointment_at", when), ("name", "name", "Ana"),
             ("total_spend", "spend_sort", 14000)]
    for sort, column, value in cases:
        q = ListQuery("ex_1", sort=sort)
        for side in (AFTER, BEFORE):
            cursor = decode_cursor(q, encode_cursor(q, row(**{column: value, "customer_id": "c_1"}), side))
            assert (cursor.value, cursor.customer_id, cursor.side) == (value, "c_1", side)


def test_a_customer_without_a_past_appointment_has_no_last_appointment_in_the_cursor():
    q = ListQuery("ex_1")
    cursor = decode_cursor(q, encode_cursor(q, row(last_appointment_at=None, customer_id="c_1")))
    assert (cursor.value, cursor.customer_id) == (None, "c_1")
    with pytest.raises(BadCursor):  # every customer has a first-seen time
        decode_cursor(ListQuery("ex_1", sort="first_seen"), forge("first_seen:desc::", None, "c_1", "a"))


def test_opaque_and_tied_to_the_query():
    q = ListQuery("ex_1", sort="name", q="ana")
    cursor = encode_cursor(q, row(name="Ana", customer_id="c_1"))
    assert "Ana" not in cursor
    with pytest.raises(BadCursor):
        decode_cursor(ListQuery("ex_1", sort="name", q="bruno"), cursor)
    with pytest.raises(BadCursor):
        decode_cursor(ListQuery("ex_1", sort="name", order="desc", q="ana"), cursor)


@pytest.mark.parametrize("cursor", [
    "%%%", "", forge("x"), forge("last_appointment:desc::", "2026-01-01", "c_1", "a"),
    forge("last_appointment:desc::", {"t": "2026-01-01T00:00:00"}, "c_1", "a"),  # naive time
    forge("last_appointment:desc::", {"t": "yesterday"}, "c_1", "a"),
    forge("last_appointment:desc::", {"t": "2026-01-01T00:00:00+00:00"}, 7, "a"),
    forge("last_appointment:desc::", {"t": "2026-01-01T00:00:00+00:00"}, "c_1", "sideways"),
])
def test_malformed_or_mistyped_cursors_are_refused(cursor):
    with pytest.raises(BadCursor):
        decode_cursor(ListQuery("ex_1"), cursor)


@pytest.mark.parametrize("sort,value", [("appointments", "3"), ("appointments", True), ("total_spend", 2**70),
                                        ("name", 5), ("name", "a\x00b"), ("name", "\ud800")])
def test_sort_key_types_are_checked(sort, value):
    q = ListQuery("ex_1", sort=sort)
    with pytest.raises(BadCursor):
        decode_cursor(q, forge(q.fingerprint(), value, "c_1", "a"))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
                                  "0001-01-01T00:30:00+23:59"])
def test_a_forged_time_with_no_utc_equivalent_is_a_bad_cursor(when):
    q = ListQuery("ex_1")
    with pytest.raises(BadCursor):
        decode_cursor(q, forge(q.fingerprint(), {"t": when}, "c_1", AFTER))


def test_a_cursor_time_is_bound_in_utc():
    q = ListQuery("ex_1")
    cursor = decode_cursor(q, forge(q.fingerprint(), {"t": "2026-01-04T12:00:00+02:00"}, "c_1", AFTER))
    assert cursor.value == datetime(2026, 1, 4, 10, tzinfo=timezone.utc) and cursor.value.utcoffset().total_seconds() == 0
