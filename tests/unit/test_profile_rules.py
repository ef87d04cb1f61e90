"""The rules of what an expert keeps on a customer (field definitions, field values, tags,
archive), without a database; and the value checks the API applies before publishing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api.profiles import Invalid, checked_tags, checked_values
from projections import rules
from customers.commands import (CustomerArchived, CustomerErased, CustomerFieldsSet, CustomerTagsSet,
                                  CustomerUnarchived, FieldDefinition, FieldsDefined, canonical, command_adapter)
from projections.forgetting import ref_of
from projections.rules import profiles, registry
from projections.rules.model import Changes, Erasure, Profile, Summary, View

T0 = datetime(2026, 5, 1, 9, tzinfo=timezone.utc)
H = "a" * 64
KEY = ("ex", "c_1")


def view() -> View:
    return View(version=1, secret="s" * 32, as_of=T0, now=T0)


def run(v: View, *items) -> Changes:
    changes = Changes()
    rules.apply_items(v, changes, items)
    return changes


def on(kind, at=T0, customer="c_1", **kw):
    return kind(command_id="k", occurred_at=at, expert_id="ex", customer_id=customer, email_hash=H, **kw)


def test_every_profile_command_has_its_rule_and_decodes_from_the_topic():
    for kind in ("fields.defined", "customer.fields_set", "customer.tags_set", "customer.archived",
                 "customer.unarchived"):
        assert kind in registry.EVENT_TYPES
    cmd = on(CustomerTagsSet, tags=["VIP"])
    assert command_adapter.validate_json(cmd.model_dump_json()) == cmd


def test_definitions_are_replaced_whole():
    v = view()
    run(v, FieldsDefined(command_id="1", occurred_at=T0, expert_id="ex",
                         definitions=[FieldDefinition(key="goal", label="Goal", type="text")]))
    changes = run(v, FieldsDefined(command_id="2", occurred_at=T0, expert_id="ex",
                                   definitions=[FieldDefinition(key="level", label="Level", type="choice",
                                                                choices=["a", "b"])]))
    assert v.definitions["ex"] == [{"key": "level", "label": "Level", "type": "choice", "choices": ["a", "b"]}]
    assert changes.definitions == {"ex"}


def test_field_values_merge_and_null_clears_and_twice_is_once():
    v = view()
    run(v, on(CustomerFieldsSet, values={"goal": "sleep", "level": 3}))
    cmd = on(CustomerFieldsSet, T0 + timedelta(minutes=1), values={"goal": None, "note": "x"})
    changes = run(v, cmd)
    run(v, cmd)
    assert v.profiles[KEY].fields == {"level": 3, "note": "x"}
    assert changes.profiles == {KEY} and v.profiles[KEY].updated_at == T0 + timedelta(minutes=1)


def test_tags_are_a_whole_set_and_archive_toggles():
    v = view()
    run(v, on(CustomerTagsSet, tags=["b", "a"]), on(CustomerArchived))
    assert v.profiles[KEY].tags == ["a", "b"] and v.profiles[KEY].archived is True
    run(v, on(CustomerTagsSet, tags=[]), on(CustomerUnarchived))
    assert v.profiles[KEY].tags == [] and v.profiles[KEY].archived is False


def test_commands_on_an_erased_customer_up_to_the_erasure_change_nothing():
    v = view()
    v.erased_refs[("customer", ref_of("ex", "c_1"))] = T0
    changes = run(v, on(CustomerTagsSet, T0, tags=["vip"]))
    assert KEY not in v.profiles and changes.skipped_erased == 1
    run(v, on(CustomerTagsSet, T0 + timedelta(seconds=1), tags=["new"]))  # a later relationship
    assert v.profiles[KEY].tags == ["new"]


def test_an_erasure_removes_every_profile_of_the_person():
    v = view()
    run(v, on(CustomerTagsSet, tags=["vip"]), on(CustomerArchived, customer="c_2"))
    v.erasures[H] = Erasure(H, profiles=[("ex", "c_9")])
    changes = run(v, CustomerErased(command_id="e", occurred_at=T0 + timedelta(hours=1), email_hash=H))
    assert v.profiles == {}
    assert changes.profiles_removed == {KEY, ("ex", "c_2"), ("ex", "c_9")} and not changes.profiles


def test_the_summary_shows_the_profiles_archive_whichever_came_first():
    v = view()
    v.summaries[KEY] = Summary(email="ana@example.com", name="Ana", phone=None, first_seen_at=T0)
    v.summaries[("ex", "c_2")] = Summary(email="bea@example.com", name="Bea", phone=None, first_seen_at=T0,
                                         archived=True)
    v.profiles[KEY] = Profile("ex", "c_1", H, archived=True)
    changes = Changes()
    profiles.onto_summaries(v, changes)
    assert v.summaries[KEY].archived is True
    assert v.summaries[("ex", "c_2")].archived is False  # no profile (any more): not archived
    assert changes.summaries == {KEY, ("ex", "c_2")}
    again = Changes()
    profiles.onto_summaries(v, again)
    assert again.summaries == set()  # nothing to write when it already shows


DEFINITIONS = [{"key": "goal", "label": "Goal", "type": "choice", "choices": ["sleep", "stress"]},
               {"key": "n", "label": "N", "type": "number"}, {"key": "ok", "label": "OK", "type": "boolean"},
               {"key": "born", "label": "Born", "type": "date"}, {"key": "t", "label": "T", "type": "text"}]


@pytest.mark.parametrize("values, field", [
    ({"goal": "run"}, "fields.goal"), ({"n": "1"}, "fields.n"), ({"n": True}, "fields.n"),
    ({"n": float("inf")}, "fields.n"), ({"ok": 1}, "fields.ok"), ({"born": "2026-02-30"}, "fields.born"),
    ({"born": "1/2/2026"}, "fields.born"), ({"t": "   "}, "fields.t"), ({"t": "x" * 501}, "fields.t"),
    ({"other": 1}, "fields.other"),
])
def test_a_value_that_does_not_fit_its_definition_is_refused_naming_it(values, field):
    with pytest.raises(Invalid) as refused:
        checked_values(DEFINITIONS, values)
    assert refused.value.field == field


def test_values_that_fit_are_stored_as_given_and_compared_as_one_text():
    values = checked_values(DEFINITIONS, {"goal": "sleep", "n": 4.0, "ok": False, "born": "1990-01-31",
                                          "t": " a note "})
    assert values == {"goal": "sleep", "n": 4.0, "ok": False, "born": "1990-01-31", "t": "a note"}
    assert [canonical(v) for v in values.values()] == ["sleep", "4", "false", "1990-01-31", "a note"]
    checked = checked_values(DEFINITIONS, {"t": "card 4242 4242 4242 4242"})
    assert on(CustomerFieldsSet, values=checked).values["t"] == "card [card number]"  # as published


def test_tags_are_trimmed_lower_cased_once_and_bounded():
    assert checked_tags([" VIP", "vip ", "Sleep   Clinic"]) == ["sleep clinic", "vip"]
    with pytest.raises(Invalid):
        checked_tags(["x" * 41])
    with pytest.raises(Invalid):
        checked_tags([f"t{i}" for i in range(21)])
    with pytest.raises(Invalid):
        checked_tags([" "])
