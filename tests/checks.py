"""Comparing what the API answers with a scenario's independent figures."""

from __future__ import annotations

from tests.harness import eventually
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


async def list_matches(stack, scenario: Scenario) -> bool:
    """The lists show exactly the expected customers, spend and appointment counts."""
    for expert in scenario.experts:
        got = {c["email"]: (c["total_spend"], c["appointments"]["total"], c["appointments"]["cancelled"])
               for c in await all_customers(stack, expert)}
        want = {e.email: (amounts(e.spend), e.appointments, e.cancelled)
                for (ex, _), e in scenario.expected.items() if ex == expert}
        if got != want:
            return False
    return True


async def assert_matches(stack, scenario: Scenario, timeout: float = 240) -> int:
    """Wait for the lists to settle, then check every customer's detail; returns how many."""
    await eventually(lambda: list_matches(stack, scenario), timeout=timeout, interval=2)
    checked = 0
    for expert in scenario.experts:
        for c in await all_customers(stack, expert):
            exp = scenario.expected[(expert, c["email"])]
            d = (await stack.api.get(f"/api/customers/{c['id']}", headers=stack.auth(expert))).json()
            assert d["total_spend"] == amounts(exp.spend), c["email"]
            assert d["stats"]["expert_revenue"] == amounts(exp.revenue), c["email"]
            assert d["stats"]["refunded"] == amounts(exp.refunded), c["email"]
            got = {p["id"]: {"status": p["status"], "amount_refunded": p["amount_refunded"]} for p in d["payments"]}
            assert got == exp.payments, c["email"]
            checked += 1
    assert checked == len(scenario.expected)
    return checked
