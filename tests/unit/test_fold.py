"""The bulk fold's parts without Kafka or a database: the in-memory tables, the store over them
(the same rules give the same rows as the SQL store would), and the routing of records that are
not keyed by their expert."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from customers.commands import CustomerErased
from customers.ids import customer_id, email_hash
from projections.memory import (FoldState, state_of, MemoryStore, MemTable, ValueTooLong, changed_in, close_journal, evict,
                                open_journal, restore, scopes_in, version_rows)
from projections.projector import in_order, run_batch
from projections.rules.summaries import summary_of
from streams.fold import Plan, Scan, Share, route, shares_of
from streams.poison import Source
from tests.unit.test_rules import SECRET, T0, H, created, event, note, paid

ANA = customer_id(SECRET, "ex", "ana@example.com")
H_ANA = email_hash(SECRET, "ana@example.com")


def _shown(row: tuple) -> str:
    """A row as text, a value held as JSON (`msgspec.Raw`) by its JSON."""
    return repr(tuple(bytes(v) if isinstance(v, msgspec.Raw) else v for v in row))


def fold(state: FoldState, items: list, now: datetime = T0) -> None:
    asyncio.run(run_batch(MemoryStore(state, 1, T0), items, now))


# --- tables ------------------------------------------------------------------------------------------

def test_a_table_finds_rows_by_its_indexes_and_a_rollback_restores_rows_and_indexes():
    table = MemTable(first=lambda row: row[0])
    table.put("a", ("x", 1))
    table.undo = []
    table.put("a", ("y", 2))
    table.put("b", ("y", 3))
    table.delete("a")
    assert table.find("first", "y") == {"b"} and table.find("first", "x") == set()
    table.rollback()
    assert table.rows == {"a": ("x", 1)} and table.find("first", "x") == {"a"} and table.find("first", "y") == set()


def test_a_failed_batch_leaves_the_state_as_it_was():
    state = FoldState(SECRET)
    fold(state, [created("m1"), paid("pi_1", 7000, meeting="m1")])
    before = {name: dict(table.rows) for name, table in vars(state).items() if isinstance(table, MemTable)}
    state.begin()
    with pytest.raises(ValueTooLong):
        fold(state, [created("m2"), note("n" * 100, at=T0)])  # a note id longer than its column
    state.rollback()
    after = {name: dict(table.rows) for name, table in vars(state).items() if isinstance(table, MemTable)}
    assert after == before
    assert state.meetings.find("customer", ("ex", ANA)) == {("ex", "m1")}


# --- the store over them: the same rules, the same rows --------------------------------------------

def test_a_payment_seen_before_its_booking_is_linked_when_the_booking_comes_in_a_later_batch():
    state = FoldState(SECRET)
    fold(state, [paid("pi_1", 7000, expert=None)])
    assert state.payments.rows["pi_1"].owner is None
    fold(state, [created("m1", pi="pi_1")])
    assert state.payments.rows["pi_1"].owner == ("ex", ANA)
    assert state.summaries.rows[("ex", ANA)].spend == {"eur": 7000}


def test_summaries_and_insights_of_a_fold_equal_a_recount_whatever_the_batches():
    items = [created(f"m{i}", start=T0 + (i - 5) * 24 * H, pi=f"pi_{i}") for i in range(10)]
    items += [paid(f"pi_{i}", 1000 * (i + 1), meeting=f"m{i}") for i in range(0, 10, 2)]
    items += [event("booking.cancelled", "m3", T0 - H, reason="x"), event("booking.rescheduled", "m8", T0 - H,
              start_time=(T0 + 30 * 24 * H).isoformat(), end_time=(T0 + 30 * 24 * H + H).isoformat())]
    whole, batched = FoldState(SECRET), FoldState(SECRET)
    fold(whole, items)
    for i in range(0, len(items), 3):
        fold(batched, items[i:i + 3])
    rows = lambda state: {table.name: sorted(map(_shown, rows)) for table, _c, rows in version_rows(state, 1)}  # noqa: E731
    assert rows(whole) == rows(batched)
    s = whole.summaries.rows[("ex", ANA)]
    expected = summary_of(whole.meetings.rows.values(), [state_of(p) for p in whole.payments.rows.values()], T0)
    assert s == expected and s.cancelled == 1 and s.spend == {"eur": 25000}


def test_an_erasure_in_a_fold_removes_the_person_and_keeps_a_booking_made_after_it_in_the_same_batch():
    """Rules run in stages (bookings before commands): a batch is cut around each erasure, so
    the booking that came after it is not taken with the rest."""
    state = FoldState(SECRET)
    h = email_hash(SECRET, "ana@example.com")
    items = [created("m1", at=T0 - 10 * H), paid("pi_1", 7000, meeting="m1"),
             CustomerErased(command_id="c", occurred_at=T0, email_hash=h),
             created("m2", at=T0 + 2 * H, start=T0 + 48 * H, pi="pi_2"), paid("pi_2", 3000, meeting="m2")]
    assert [len(part) for part in in_order(items)] == [2, 1, 2]
    for part in in_order(items):
        fold(state, part)
    assert set(state.meetings.rows) == {("ex", "m2")} and set(state.payments.rows) == {"pi_2"}
    assert state.summaries.rows[("ex", ANA)].appointments == 1 and state.summaries.rows[("ex", ANA)].spend == {"eur": 3000}
    assert state.new_erasures == {h} and state.erasures.rows[h] == T0
    whole = FoldState(SECRET)
    fold(whole, items)  # uncut, the erasure would run after the later booking and take it too
    assert set(whole.meetings.rows) == set()


# --- routing -----------------------------------------------------------------------------------------

def src(topic: str, partition: int, offset: int) -> Source:
    return Source(topic, partition, offset, b"k", b"{}", T0 + timedelta(seconds=offset))


def test_unkeyed_payment_facts_go_to_the_share_whose_experts_name_their_payment():
    refund = src("customer-activity", 0, 7)  # names the charge and the intent: joins the two facts
    charge = src("customer-activity", 3, 2)  # names the charge only
    lonely = src("customer-activity", 1, 4)  # nobody names it: stays where it is
    scans = [Scan(0, unkeyed=[(refund, frozenset({"ch_1", "pi_1"}))]),
             Scan(1, unkeyed=[(lonely, frozenset({"pi_9"}))]),
             Scan(2),
             Scan(3, unkeyed=[(charge, frozenset({"ch_1"}))])]
    plan = route(scans, {2: ({"pi_1"}, set()), 0: (set(), set())})
    assert plan.extra[2] == [refund, charge]
    assert plan.moved[0] == {("customer-activity", 0, 7)} and plan.moved[3] == {("customer-activity", 3, 2)}
    assert not plan.moved.get(1) and 1 not in plan.extra


def test_a_payment_nobody_names_is_folded_once_in_the_lowest_share_of_its_facts():
    a, b = src("customer-activity", 2, 1), src("customer-activity", 1, 5)
    plan = route([Scan(1, unkeyed=[(b, frozenset({"ch_2"}))]), Scan(2, unkeyed=[(a, frozenset({"ch_2", "pi_2"}))])], {})
    assert plan.extra[1] == [a] and plan.moved[2] == {("customer-activity", 2, 1)} and not plan.moved.get(1)


def test_reports_follow_their_message_and_erasures_reach_every_share():
    report, orphan = src("email-events", 0, 1), src("email-events", 0, 2)
    erased = src("customer-commands", 1, 3)
    scans = [Scan(0, reports=[(report, "re_1"), (orphan, "re_x")]), Scan(1, erasures=[erased]), Scan(2)]
    plan = route(scans, {2: (set(), {"re_1"})})
    assert plan.extra[2] == [report] and 0 not in plan.extra and 1 not in plan.extra
    assert plan.copies[0] == [erased] and plan.copies[2] == [erased] and 1 not in plan.copies
    assert plan.moved[0] == {("email-events", 0, 1)}
    assert isinstance(plan, Plan)


# --- shares ------------------------------------------------------------------------------------------

class _Settings:
    topic_prefix = "p."

    def topic(self, name: str) -> str:
        return self.topic_prefix + name


def test_partitions_are_sliced_so_that_no_share_holds_more_than_its_size():
    settings = _Settings()
    topics = ["p.bookings", "p.customer-activity", "p.customer-commands", "p.communications", "p.email-events"]
    ends = {(topic, p): 100 for topic in topics for p in range(4)}  # 500 records a partition number
    assert [(s.index, s.part, s.parts) for s in shares_of(ends, settings)] == [(i, 0, 1) for i in range(4)]
    shares = shares_of(ends, settings, 200)
    assert len(shares) == 12 and {s.parts for s in shares} == {3}
    assert sorted(s.index for s in shares) == list(range(12))
    assert all(set(s.tps) == {(topic, s.index // 3) for topic in topics} for s in shares)
    # every record in exactly one share of its partition number; an expert's records all in the same one
    record = lambda key: type("R", (), {"key": key})()  # noqa: E731
    of_partition = [s for s in shares if s.index // 3 == 0]
    for key in (b"ex_1", b"ex_2", b"pi_9", b"", None):
        holders = [s.index for s in of_partition if s.holds(record(key))]
        assert len(holders) == 1 and holders == [s.index for s in of_partition if s.holds(record(key))]


def test_topics_of_different_partition_counts_are_one_share():
    settings = _Settings()
    ends = {("p.bookings", 0): 5, ("p.bookings", 1): 5, ("p.customer-activity", 0): 5, ("p.customer-commands", 0): 1,
            ("p.communications", 0): 1, ("p.email-events", 0): 1}
    (share,) = shares_of(ends, settings)
    assert share.parts == 1 and set(share.tps) >= {("p.bookings", 0), ("p.bookings", 1)}
    assert isinstance(share, Share)


# --- what a state kept between rounds writes back (a catch-up) -------------------------------------

def test_what_a_journal_logged_is_the_rows_added_replaced_and_removed():
    state = FoldState(SECRET)
    fold(state, [created("m1", pi="pi_1"), paid("pi_1", 7000, meeting="m1"), created("m2", start=T0 + 48 * H)])
    journal = open_journal(state)
    assert "counts" not in journal  # insight sums are held as differences to add
    fold(state, [event("booking.cancelled", "m2", T0 + H, reason="x"), created("m3", start=T0 + 72 * H)])
    close_journal(state)
    changes = {c.sink.name: c for c in changed_in(state, journal, 7)}
    meetings = changes["meetings"]
    assert meetings.removed == [] and meetings.replaced == [("ex", "m2")]
    [(table, columns, added)] = meetings.added_rows
    added = list(added)
    assert table.name == "meetings" and len(added) == 1 and added[0][0] == 7
    assert dict(zip(columns, added[0]))["meeting_id"] == "m3"
    [(_t, _c, replaced)] = meetings.replaced_rows
    assert [dict(zip(columns, row))["cancelled_at"] for row in replaced] == [T0 + H]
    assert changes["summaries"].replaced == [("ex", ANA)] and "payments" not in changes  # untouched: not written
    assert "counts" not in changes
    assert scopes_in(state, journal) == {"ex"}  # the expert: every row of this batch is theirs
    # a removal names the key as the table's columns and as the state's
    journal = open_journal(state)
    state.payments.delete("pi_1")
    close_journal(state)
    [gone] = changed_in(state, journal, 7)
    assert gone.removed == [("pi_1",)] and gone.gone == ["pi_1"] and not list(gone.added_rows[0][2]) and gone.written == 0
    # the payment's scopes (every id it is known by) and its expert's
    assert scopes_in(state, journal) == {"p:pi_1", "p:ch_pi_1", "ex"}


def test_a_message_is_guarded_by_its_delivery_reports_scope_as_well_as_its_experts():
    """A message's status is read from its provider's reports (`r:<id>`, rows of no expert): a
    writer that wrote the message from a stale copy of the reports must be fenced by that scope."""
    from projections.rules.model import Communication
    state = FoldState(SECRET)
    journal = open_journal(state)
    state.communications.put("msg_1", Communication("msg_1", "ex", ANA, H_ANA, "platform", "email", T0,
                                                     provider_message_id="re_1", status="sent"))
    state.communications.put("msg_2", Communication("msg_2", "ex", ANA, H_ANA, "expert", "phone", T0))
    close_journal(state)
    assert scopes_in(state, journal) == {"ex", "r:re_1"}


def test_a_row_put_back_as_it_was_is_not_written_and_a_restored_journal_undoes_the_batch():
    state = FoldState(SECRET)
    fold(state, [created("m1", pi="pi_1")])
    before = dict(state.meetings.rows), dict(state.summaries.rows)
    journal = open_journal(state)
    fold(state, [event("booking.cancelled", "m1", T0 + H, reason="x"), created("m2", start=T0 + 48 * H)])
    state.stripe_events.put("evt_x", ("charge.succeeded", T0))
    state.stripe_events.delete("evt_x")  # added and removed within the batch: nothing to write
    close_journal(state)
    assert {c.sink.name for c in changed_in(state, journal, 1)} == {"meetings", "summaries", "contributions"}
    restore(state, journal)
    assert (state.meetings.rows, state.summaries.rows) == before
    assert state.meetings.find("customer", ("ex", ANA)) == {("ex", "m1")}  # the indexes follow


def test_an_eviction_forgets_the_experts_rows_and_the_payments_of_no_expert_but_what_is_kept():
    state = FoldState(SECRET)
    fold(state, [created("m1", pi="pi_1"), paid("pi_1", 7000, meeting="m1"), created("m9", expert="other")])
    fold(state, [paid("pi_free", 100, expert=None, meeting=None), paid("pi_kept", 200, expert=None, meeting=None)])
    assert {"pi_free", "pi_kept"} <= state.payments.rows.keys()
    scopes = evict(state, {"ex"}, keep={"p:pi_kept"})
    assert {k[0] for k in state.meetings.rows} == {"other"} and {k[0] for k in state.summaries.rows} == {"other"}
    assert set(state.payments.rows) == {"pi_kept"} and set(state.aliases.rows.values()) <= {"pi_kept"}
    assert {"ex", "p:pi_1", "p:pi_free"} <= scopes and "p:pi_kept" not in scopes


def test_the_whole_state_as_rows_has_a_row_per_value_and_leaves_out_sums_of_zero():
    state = FoldState(SECRET)
    fold(state, [created("m1", pi="pi_1"), paid("pi_1", 7000, meeting="m1")])
    key = next(iter(state.counts.rows))
    state.counts.rows[key] = (0, None)
    rows = {table.name: list(r) for table, _c, r in version_rows(state, 1)}
    assert len(rows["meetings"]) == 1 and len(rows["payments"]) == 1 and len(rows["customers"]) == 1
    assert len(rows["insight_counts"]) == len(state.counts.rows) - 1
