"""Opaque customer ids: stable for (expert, email), never the email, not derivable without the key."""

from customers.ids import customer_id, email_hash

KEY = "unit-test-customer-id-secret"


def test_stable_for_the_same_expert_and_email_however_written():
    first = customer_id(KEY, "ex_1", "ana@example.com")
    assert first == customer_id(KEY, "ex_1", " Ana@Example.COM ")
    assert first.startswith("c_") and len(first) == 34 and int(first[2:], 16) >= 0


def test_not_the_email_nor_anything_readable_from_it():
    cid = customer_id(KEY, "ex_1", "ana.silva@example.com")
    assert "ana" not in cid and "example" not in cid and "@" not in cid


def test_differs_per_expert_and_without_the_key():
    cid = customer_id(KEY, "ex_1", "ana@example.com")
    assert cid != customer_id(KEY, "ex_2", "ana@example.com")
    assert cid != customer_id("another-key", "ex_1", "ana@example.com")
    assert cid[2:] not in email_hash(KEY, "ana@example.com")
