"""What a batch claims before it reads (`projections.claims`), without a database."""

from datetime import datetime, timezone

from testing import samples as s
from customers.events import parse_booking_event
from projections import claims
from projections.claims import MAX_CLAIMS, Claim, lock_id, named_by
from customers.commands import CustomerErased, NoteAdded
from projections.projector import Applied, Position
from streams.metrics import WorkerMetrics
from customers.stripe_facts import to_fact
from testing.harness import metric

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)


def test_lock_numbers_are_stable_signed_64_bit_and_tell_keys_apart():
    assert lock_id(("expert", 1, "ex")) == 1542514947148010069  # the same in every process and release
    numbers = {lock_id(k) for k in [("expert", 1, "a/b"), ("expert", 1, "a", "b"), ("payment", 1, "a/b"),
                                    ("expert", 2, "a/b")]}
    assert len(numbers) == 4
    assert all(-2**63 <= n < 2**63 for n in numbers)


def test_a_batch_claims_its_partitions_experts_and_every_payment_id_it_names():
    booking = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", T0, payment_intent_id="pi_1",
                                                    checkout_session_id="cs_1"))
    refund = to_fact(s.stripe_event("charge.refunded", s.charge("ch_9", "pi_9", 5000, refunded=5000)))
    note = NoteAdded(command_id="c1", occurred_at=T0, note_id="n1", expert_id="ex2", customer_id="c_1", body="hi",
                     created_at=T0)
    claim = named_by(3, [Position("bookings", 4, 10), Position("customer-activity", 7, 2)], [booking, refund, note])
    assert not claim.exclusive
    assert claim.keys == {
        ("partition", 3, "bookings", 4), ("partition", 3, "customer-activity", 7),
        ("expert", 3, "ex"), ("expert", 3, "ex2"),
        ("payment", 3, "pi_1"), ("payment", 3, "cs_1"), ("payment", 3, "pi_9"), ("payment", 3, "ch_9"),
    }


def test_an_erasure_or_a_huge_batch_holds_the_whole_version():
    erased = CustomerErased(command_id="c", occurred_at=T0, email_hash="a" * 64)
    assert named_by(1, [], [erased]).exclusive
    many = [parse_booking_event(s.booking_created(f"ex{i}", "m", "a@example.com", "A", T0))
            for i in range(MAX_CLAIMS + 1)]
    assert named_by(1, [], many).exclusive
    assert not named_by(1, [], many[:10]).exclusive


def test_a_claim_misses_what_it_does_not_hold_and_widens_to_hold_it():
    held = Claim(1, {("expert", 1, "a")})
    needed = Claim(1, {("expert", 1, "a"), ("payment", 1, "pi")})
    assert held.missing(needed)
    wider = held.widened(needed)
    assert not wider.missing(needed) and not wider.exclusive
    assert not Claim(1, exclusive=True).missing(needed)
    assert held.missing(Claim(1, exclusive=True))


def test_conflicts_are_told_by_their_sqlstate():
    class Orig:
        def __init__(self, state):
            self.sqlstate = state

    class Err(Exception):
        def __init__(self, state):
            self.orig = Orig(state)

    assert claims.must_retry(Err("40P01")) and claims.must_retry(Err("40001"))
    assert claims.must_retry(Err("53200")) and claims.lock_table_full(Err("53200"))
    assert not claims.must_retry(Err("23505")) and not claims.must_retry(ValueError())


def test_batches_run_again_are_counted():
    metrics = WorkerMetrics()
    metrics.observe(Applied(retries=2), 0.01, 5)
    from prometheus_client import generate_latest

    assert metric(generate_latest(metrics.registry).decode(), "customers_batch_retries_total") == 2
