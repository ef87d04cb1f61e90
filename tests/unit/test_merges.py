"""Merging one expert's duplicate customers and splitting them again, through the rules over the
in-memory store (the worker's and the replay's path): what the expert sees (the list's rows, the
profiles, the insight sums) after a merge, after an unmerge, whatever the order of the events
around them, and after an erasure of either person."""

from __future__ import annotations

import json
from datetime import timedelta

import msgspec

from customers.commands import CustomerErased, CustomerFieldsSet, CustomerMerged, CustomerTagsSet, CustomerUnmerged
from customers.ids import customer_id, email_hash
from projections.memory import FoldState, version_rows
from tests.unit.test_fold import fold
from tests.unit.test_rules import SECRET, T0, H, created, note, paid
from testing import samples as s

D = timedelta(days=1)
WORK, HOME, OTHER = "ana@work.example", "ana@home.example", "bea@example.com"
A, B, C = (customer_id(SECRET, "ex", e) for e in (WORK, HOME, OTHER))


def history() -> list:
    """Ana books with two emails (and is paid for under both), Bea once; tags and fields on both of Ana's."""
    return [
        created("m1", WORK, "Ana Silva", start=T0 - 100 * D, at=T0 - 110 * D, pi="pi_1"),
        created("m2", HOME, "Ana S.", start=T0 - 20 * D, at=T0 - 30 * D, pi="pi_2"),
        created("m3", WORK, "Ana Silva", start=T0 + 5 * D, at=T0 - 2 * D),
        created("m4", OTHER, "Bea", start=T0 - 3 * D, at=T0 - 9 * D, pi="pi_4"),
        paid("pi_1", 7000, meeting="m1"), paid("pi_2", 5000, meeting="m2", refunded=1000), paid("pi_4", 3000, meeting="m4"),
        tags(A, ["vip"], WORK), tags(B, ["sleep", "vip"], HOME),
        values(A, {"goal": "rest"}, WORK), values(B, {"goal": "sleep", "source": "friend"}, HOME),
        note("n1", "work note", at=T0 - 50 * D, customer=A), note("n2", "home note", at=T0 - 10 * D, customer=B),
    ]


def tags(cid: str, tags: list[str], email: str, at=T0 - 5 * D):
    return CustomerTagsSet(command_id=s.rid("c"), occurred_at=at, expert_id="ex", customer_id=cid,
                           email_hash=email_hash(SECRET, email), tags=tags)


def values(cid: str, values: dict, email: str, at=T0 - 5 * D):
    return CustomerFieldsSet(command_id=s.rid("c"), occurred_at=at, expert_id="ex", customer_id=cid,
                             email_hash=email_hash(SECRET, email), values=values)


def merged(survivor=A, duplicate=B, email=HOME, at=T0 - H):
    return CustomerMerged(command_id=s.rid("c"), occurred_at=at, expert_id="ex", customer_id=survivor,
                          duplicate=duplicate, email_hash=email_hash(SECRET, email),
                          survivor_email_hash=email_hash(SECRET, WORK if survivor == A else OTHER))


def unmerged(survivor=A, duplicate=B, at=T0 - H / 2):
    return CustomerUnmerged(command_id=s.rid("c"), occurred_at=at, expert_id="ex", customer_id=survivor,
                            duplicate=duplicate)


def erased(email: str, at=T0 - H / 4):
    return CustomerErased(command_id=s.rid("c"), occurred_at=at, email_hash=email_hash(SECRET, email))


HISTORY = history()  # one set of events (their ids are random): every fold below starts from it


def shown(state: FoldState) -> dict:
    """What the expert sees: list rows, profiles' tags, fields and archive, insight sums, merges."""
    out = {}
    for table, columns, rows in version_rows(state, 1):
        if table.name in ("customers", "insight_counts", "customer_merges"):
            out[table.name] = sorted(json.dumps([bytes(v).decode() if isinstance(v, msgspec.Raw) else v
                                                 for v in r], default=str) for r in rows)
    out["profiles"] = {k: (p.tags, p.fields, p.archived) for k, p in state.profiles.rows.items()
                       if p.tags or p.fields or p.archived}
    return out


def folded(*parts: list) -> FoldState:
    state = FoldState(SECRET)
    for part in parts:
        fold(state, part)
    return state


def test_a_merge_counts_both_people_in_the_survivor_and_takes_the_duplicate_off_the_list():
    state = folded(list(HISTORY), [merged()])
    rows = state.summaries.rows
    assert ("ex", B) not in rows and ("ex", C) in rows
    ana = rows[("ex", A)]
    assert (ana.appointments, ana.past, ana.upcoming) == (3, 2, 1)
    assert ana.spend == {"eur": 11000} and ana.email == WORK and ana.name == "Ana Silva"
    assert ana.first_appointment_at == T0 - 100 * D and ana.last_appointment_at == T0 - 20 * D
    kept = state.profiles.rows[("ex", A)]
    assert kept.tags == ["sleep", "vip"] and kept.fields == {"goal": "rest", "source": "friend"}  # the survivor's win
    assert state.merges.rows[("ex", B)].added == {"tags": ["sleep"], "fields": {"source": "friend"}}
    # later events of either email count for the survivor
    fold(state, [created("m5", HOME, "Ana S.", start=T0 + 9 * D, at=T0), paid("pi_5", 2000, meeting="m5")])
    fold(state, [created("m5b", HOME, "Ana S.", start=T0 + 9 * D, at=T0, pi="pi_5")])
    ana = state.summaries.rows[("ex", A)]
    assert ana.appointments == 5 and ana.email == WORK and ("ex", B) not in state.summaries.rows


def test_merge_then_unmerge_is_the_identity():
    before = shown(folded(list(HISTORY)))
    assert shown(folded(list(HISTORY), [merged()], [unmerged()])) == before
    assert shown(folded(list(HISTORY), [merged(), unmerged()])) == before  # in one batch too


def test_a_merge_is_the_same_whatever_the_order_of_the_events_around_it():
    later = [created("m6", HOME, "Ana S.", start=T0 + 3 * D, at=T0 - 3 * H), paid("pi_6", 4000, meeting="m6"),
             created("m6", HOME, "Ana S.", start=T0 + 3 * D, at=T0 - 3 * H, pi="pi_6")]
    first = shown(folded(list(HISTORY), [merged()], later))
    assert shown(folded(list(HISTORY), later, [merged()])) == first
    assert shown(folded(list(HISTORY) + later + [merged()])) == first


def test_unmerge_after_later_events_splits_them_by_email():
    later = [created("m7", HOME, "Ana S.", start=T0 + 4 * D, at=T0 - 20 * H)]
    split = folded(list(HISTORY), [merged()], later, [unmerged()])
    never = folded(list(HISTORY), later)
    assert shown(split) == shown(never)


def test_a_merge_that_does_not_fit_changes_nothing():
    base = shown(folded(list(HISTORY)))
    assert shown(folded(list(HISTORY), [merged(duplicate=A)])) == base  # itself
    # (a customer the expert does not have is refused at the door: tests/integration/test_merges.py)
    twice = folded(list(HISTORY), [merged()])
    assert shown(folded(list(HISTORY), [merged()], [merged(survivor=C, duplicate=B)])) == shown(twice)
    assert shown(folded(list(HISTORY), [merged()], [unmerged(survivor=C)])) == shown(twice)  # not merged into C


def test_erasing_the_duplicate_keeps_the_survivor_as_if_the_duplicate_never_was():
    gone = folded(list(HISTORY), [merged()], [erased(HOME)])
    assert not gone.merges.rows
    without = folded([x for x in HISTORY if getattr(x, "customer_id", None) != B
                      and getattr(getattr(x, "customer", None), "email", None) != HOME
                      and getattr(x, "payment_id", None) != "pi_2"])
    want, got = shown(without), shown(gone)
    assert got["customers"] == want["customers"] and got["profiles"] == want["profiles"]
    assert all(n.customer_id != B for n in gone.notes.rows.values())


def test_erasing_the_survivor_leaves_the_duplicate_standing_alone():
    gone = folded(list(HISTORY), [merged()], [erased(WORK)])
    assert not gone.merges.rows and ("ex", A) not in gone.summaries.rows
    home = gone.summaries.rows[("ex", B)]
    assert home.appointments == 1 and home.spend == {"eur": 4000} and home.email == HOME
    assert gone.profiles.rows[("ex", B)].tags == ["sleep", "vip"]
