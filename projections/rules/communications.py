"""Communications: what the platform sent a customer, what became of it, what the expert logged.

* `message.sent` makes one platform message per event id (a re-sent event changes nothing); its
  customer is the expert's customer with that email, as for bookings, and an erased person's
  messages up to the erasure stay out.
* `email.report` keeps each delivery report of a provider email id, whether its message came
  yet or not, and sets the status of the message with that id: reports and messages may come in
  any order and any number of times, and give the same status (`customers.messages.message_status`).
* `communication.logged` is the expert's own record of a contact (phone, email, message, in
  person), once per id, refused on an erased relationship up to the erasure, like notes.

Each one moves the customer's `last_contact_at` (on the profile, copied to the summary) to the
newest communication's time.
"""

from __future__ import annotations

import hashlib

from customers.ids import customer_id, email_hash
from customers.messages import message_status
from projections.forgetting import ref_of
from projections.rules.model import Changes, Communication, Profile, View


def message_id(expert_id: str, event_id: str) -> str:
    """A platform message's id: stable for its event, so a duplicate lands on the same row."""
    return "msg_" + hashlib.sha256(f"{expert_id}\x00{event_id}".encode()).hexdigest()[:32]


def _status(view: View, provider_id: str | None) -> str:
    return message_status([(s, at) for s, at in view.reports.get(provider_id, [])] if provider_id else [])


def _contacted(view: View, changes: Changes, expert: str, customer: str, h: str, at) -> None:
    key = (expert, customer)
    profile = view.profiles.get(key)
    if profile is None:
        profile = view.profiles[key] = Profile(expert, customer, h, updated_at=at)
    if profile.last_contact_at is None or at > profile.last_contact_at:
        profile.last_contact_at = at
        changes.profiles.add(key)
        changes.profiles_removed.discard(key)


def message_sent(view: View, changes: Changes, event) -> None:
    changes.count(event.type)
    email = event.customer.email
    h = email_hash(view.secret, email)
    erased_at = view.erased_emails.get(h)
    if erased_at is not None and event.occurred_at <= erased_at:
        changes.skipped_erased += 1
        return
    cid = customer_id(view.secret, event.expert_id, email)
    mid = message_id(event.expert_id, event.event_id)
    if mid not in view.communications:
        view.communications[mid] = Communication(
            communication_id=mid, expert_id=event.expert_id, customer_id=cid, email_hash=h, source="platform",
            channel=event.channel, at=event.occurred_at, kind=event.kind, subject=event.subject or None,
            meeting_id=event.meeting_id, provider_message_id=event.provider_message_id,
            status=_status(view, event.provider_message_id))
        changes.communications.add(mid)
        changes.communications_removed.discard(mid)
    _contacted(view, changes, event.expert_id, cid, h, event.occurred_at)


def email_report(view: View, changes: Changes, report) -> None:
    changes.count(report.type)
    if view.erased_refs and ("email", ref_of(report.email_id)) in view.erased_refs:  # its message was erased
        changes.skipped_erased += 1
        return
    entry = [report.status, report.at.isoformat()]
    known = view.reports.setdefault(report.email_id, [])
    if entry in known:
        return
    known.append(entry)
    known.sort()
    changes.reports.add(report.email_id)
    changes.reports_removed.discard(report.email_id)
    status = _status(view, report.email_id)
    for mid, message in view.communications.items():
        if message.provider_message_id == report.email_id and message.status != status:
            message.status = status
            changes.communications.add(mid)


def communication_logged(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    erased_at = view.erased_refs.get(("customer", ref_of(cmd.expert_id, cmd.customer_id)))
    if erased_at is not None and cmd.occurred_at <= erased_at:
        changes.skipped_erased += 1
        return
    if cmd.communication_id not in view.communications:
        view.communications[cmd.communication_id] = Communication(
            communication_id=cmd.communication_id, expert_id=cmd.expert_id, customer_id=cmd.customer_id,
            email_hash=cmd.email_hash, source="expert", channel=cmd.channel, at=cmd.at, summary=cmd.summary)
        changes.communications.add(cmd.communication_id)
        changes.communications_removed.discard(cmd.communication_id)
    _contacted(view, changes, cmd.expert_id, cmd.customer_id, cmd.email_hash, cmd.at)
