"""Comparing what the API answers with a scenario's independent figures."""

from __future__ import annotations

from testing.harness import eventually
from tests.scenario import Scenario, amounts


async def all_customers(stack, expert: str) -> list[dict]:
    """Every customer of an expert, following the cursor."""
    out, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        body = (await stack.api.get("/api/customers", params=params, headers=stack.auth(expert))).json()
        out += body["customers"]
        if not (cursor := body["next_cursor"]):
            return out


async def list_differences(stack, scenario: Scenario) -> list[str]:
    """Where the lists differ from the expected customers, spend and appointment counts."""
    out = []
    for expert in scenario.experts:
        got = {c["email"]: (c["total_spend"], c["appointments"]["total"], c["appointments"]["cancelled"])
               for c in await all_customers(stack, expert)}
        want = {e.email: (amounts(e.spend), e.appointments, e.cancelled)
                for (ex, _), e in scenario.expected.items() if ex == expert}
        for email in sorted(got.keys() | want.keys()):
            if got.get(email) != want.get(email):
                out.append(f"{expert} {email}: got {got.get(email)} want {want.get(email)}")
    return out


async def _payment_differences(stack, scenario: Scenario, diff: list[str]) -> list[str]:
    """For the customers named by `diff` lines ("expert email: ..."), each payment that differs
    from the scenario's: what the detail shows against what was expected."""
    out = []
    for line in diff:
        expert, email = line.split(" ")[:2]
        email = email.rstrip(":")
        found = [c for c in await all_customers(stack, expert) if c["email"] == email]
        exp = scenario.expected.get((expert, email))
        if not found or exp is None:
            out.append(f"{email}: missing")
            continue
        d = (await stack.api.get(f"/api/customers/{found[0]['id']}", headers=stack.auth(expert))).json()
        got = {p["id"]: p for p in d["payments"]}
        for pid in sorted(got.keys() | exp.payments.keys()):
            g, w = got.get(pid), exp.payments.get(pid)
            if g is None or w is None or any(g.get(k) != v for k, v in w.items()):
                out.append(f"{email} {pid}: got {g} want {w}")
    return out


async def list_matches(stack, scenario: Scenario) -> bool:
    """The lists show exactly the expected customers, spend and appointment counts."""
    return not await list_differences(stack, scenario)


def _detail_matches(d: dict, exp) -> bool:
    got = {p["id"]: {"status": p["status"], "amount_refunded": p["amount_refunded"], "card": p["card"]}
           for p in d["payments"]}
    paid = {a["id"]: a["payment_status"] for a in d["appointments"] if a["id"] in exp.appointments_paid}
    return (d["total_spend"] == amounts(exp.spend) and d["stats"]["expert_revenue"] == amounts(exp.revenue)
            and d["stats"]["refunded"] == amounts(exp.refunded) and got == exp.payments
            and paid == exp.appointments_paid)


async def assert_matches(stack, scenario: Scenario, timeout: float = 240) -> int:
    """Wait until every customer's list entry and detail equal the scenario's; returns how many.

    The list settles first; details carry figures the list does not show (revenue, refunds,
    payment history), so each is awaited too, within the same overall deadline.
    """
    try:
        await eventually(lambda: list_matches(stack, scenario), timeout=timeout, interval=2)
    except AssertionError:
        diff = await list_differences(stack, scenario)
        ready = (await stack.api.get("/readyz")).text
        raise AssertionError(f"{len(diff)} list entries differ after {timeout}s; readyz: {ready}; "
                             f"first: {diff[:5]}; payments: {await _payment_differences(stack, scenario, diff[:3])}") \
            from None
    pending = {}
    for expert in scenario.experts:
        for c in await all_customers(stack, expert):
            pending[(expert, c["id"])] = scenario.expected[(expert, c["email"])]
    assert len(pending) == len(scenario.expected)

    async def details_settled():
        for (expert, cid), exp in list(pending.items()):
            d = (await stack.api.get(f"/api/customers/{cid}", headers=stack.auth(expert))).json()
            if _detail_matches(d, exp):
                del pending[(expert, cid)]
        return not pending

    try:
        await eventually(details_settled, timeout=timeout / 2, interval=2)
    except AssertionError:
        (expert, cid), exp = next(iter(pending.items()))
        d = (await stack.api.get(f"/api/customers/{cid}", headers=stack.auth(expert))).json()
        raise AssertionError(f"{len(pending)} customers differ; first: {exp.email}: "
                             f"got spend={d['total_spend']} stats={d['stats']} payments={d['payments']} "
                             f"appointments={[(a['id'], a['payment_status']) for a in d['appointments']]}, "
                             f"want spend={exp.spend} revenue={exp.revenue} refunded={exp.refunded} "
                             f"payments={exp.payments} appointments={exp.appointments_paid}")
    return len(scenario.expected)
