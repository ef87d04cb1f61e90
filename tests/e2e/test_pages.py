"""A person at a browser (Debian's Chromium through Playwright) on the real stack: sign in, list,
search as you type, open a customer, add a note and see it, delete it; on a desktop and a phone.
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import async_playwright, expect

from ops.demo import EXPERT, PEOPLE, demo_stream
from testing.harness import ARTIFACTS, eventually
from tests.integration.conftest import open_stack
from tests.servers import ApiProcess
from webhooks.signing import signature_header

SHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STACKS: dict = {}  # site url -> the stack behind it
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
async def site():
    from datetime import datetime, timezone

    async with open_stack("postgresql") as stack:
        bookings, stripe_events = demo_stream(datetime.now(timezone.utc))
        assert (await stack.post_bookings(bookings)).status_code == 202
        for event in stripe_events:
            body = json.dumps(event).encode()
            r = await stack.intake.post("/webhooks/stripe", content=body, headers={
                "Stripe-Signature": signature_header(body, stack.settings.webhook_secrets[0]),
                "Content-Type": "application/json"})
            assert r.status_code == 200, r.text

        async def ready():
            body = (await stack.api.get("/api/customers", headers=stack.auth(EXPERT))).json()
            return body["total"] == len(PEOPLE) and all(c["total_spend"] for c in body["customers"])

        await eventually(ready)
        with ApiProcess(stack.settings.model_copy(update={"dev_sign_in": True, "notes_visible_wait_seconds": 15}),
                        name="api-pages") as api:
            STACKS[api.url] = stack  # for the tests that send events of their own
            yield api.url


@pytest.fixture(scope="module")
async def browser():
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def signed_in(browser, site: str, viewport: dict) -> tuple:
    """A browser context signed in as the demo's expert, its page, and the requests made elsewhere."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(site) else elsewhere.append(req.url))
    await page.goto(f"{site}/customers")
    await page.get_by_label("Expert id").fill(EXPERT)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{site}/customers")
    return context, page, elsewhere


async def test_sign_in_search_open_a_customer_and_add_a_note(site, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(site) else elsewhere.append(req.url))

    await page.goto(f"{site}/customers")
    await expect(page).to_have_url(re.compile(r"/dev/sign-in\?next=%2Fcustomers$"))
    await page.get_by_label("Expert id").fill(EXPERT)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{site}/customers")
    await expect(page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    rows = page.locator("table.customers tbody tr")
    await expect(rows).to_have_count(len(PEOPLE))
    await expect(page.locator("#result-count")).to_contain_text(f"{len(PEOPLE)} customers")

    await page.screenshot(path=SHOTS / "customers-desktop.png", full_page=True)
    # keyboard users meet the skip link first, and it leads into the content
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{site}/customers#main")

    # sort by name through the column header
    await page.locator("thead").get_by_role("link", name=re.compile("^Customer")).click()
    await expect(page.locator("th[aria-sort]")).to_have_attribute("aria-sort", "ascending")
    await expect(rows.first).to_contain_text("Ana Silva")

    # search as you type: the results change without submitting the form
    await page.get_by_label("Search by name or email").press_sequentially("cost", delay=40)
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Bruno Costa")
    await expect(page).to_have_url(re.compile(r"q=cost"))

    await page.get_by_role("link", name="Bruno Costa").click()
    await expect(page.get_by_role("heading", name="Bruno Costa", level=1)).to_be_visible()
    await expect(page.get_by_text("bruno.costa@example.com").first).to_be_visible()
    await expect(page.get_by_role("table", name="Past and cancelled")).to_contain_text("Cancelled")
    await expect(page.locator("section[aria-labelledby=payments-title] tbody tr").first).to_contain_text("Visa •••• 4242")

    note = "Prefers morning sessions; send the intake form before the next visit."
    await page.get_by_label("Add a note").fill(note)
    await page.get_by_role("button", name="Add note").click()
    await expect(page.get_by_role("status")).to_have_text("Note added.")
    await expect(page.locator(".note-list .note-body")).to_have_text([note])
    await page.screenshot(path=SHOTS / "customer-detail-desktop.png", full_page=True)

    # the same person on a phone: the session cookie carries over
    phone = await browser.new_context(**PHONE, storage_state=await context.storage_state())
    mobile = await phone.new_page()
    await mobile.goto(f"{site}/customers")
    await expect(mobile.locator("table.customers tbody tr")).to_have_count(len(PEOPLE))
    assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    await mobile.screenshot(path=SHOTS / "customers-phone.png", full_page=True)
    await mobile.goto(page.url.split("?")[0])
    assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await mobile.screenshot(path=SHOTS / "customer-detail-phone.png", full_page=True)

    await page.get_by_role("button", name=re.compile("^Delete note")).click()
    await expect(page.get_by_role("status")).to_have_text("Note deleted.")
    await expect(page.locator(".note-list")).to_have_count(0)
    assert elsewhere == []  # nothing fetched from anywhere but this server
    await phone.close()
    await context.close()


async def test_tags_fields_archive_and_contacts_round_trip_through_the_pages(site, browser):
    """Fields defined through the API, then on the detail page: tags and field values saved,
    a contact logged into the timeline, the customer archived and back; the list filters by tag."""
    import httpx

    from api.auth import COOKIE

    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, _elsewhere = await signed_in(browser, site, {"width": 1280, "height": 900})
    token = {c["name"]: c["value"] for c in await context.cookies()}[COOKIE]  # the session is a bearer token
    async with httpx.AsyncClient(base_url=site) as client:
        r = await client.put("/api/custom-fields", headers={"Authorization": f"Bearer {token}"}, json=[
            {"key": "goal", "label": "Goal", "type": "choice", "choices": ["Sleep", "Stress"]},
            {"key": "referred", "label": "Referred by a friend", "type": "boolean"}])
        assert r.status_code in (202, 204), r.text

    await page.goto(f"{site}/customers?sort=name&order=asc")
    await page.get_by_role("link", name="Ana Silva").click()
    await expect(page.get_by_role("heading", name="Ana Silva", level=1)).to_be_visible()
    await page.get_by_role("textbox", name="Tags").fill("VIP, sleep clinic")
    await page.get_by_role("button", name="Save tags").click()
    await expect(page.get_by_role("status")).to_have_text("Tags saved.")
    await expect(page.get_by_role("list", name="Tags")).to_contain_text("vip")
    await page.get_by_label("Goal").select_option("Sleep")
    await page.get_by_label("Referred by a friend").select_option("true")
    await page.get_by_role("button", name="Save fields").click()
    await expect(page.get_by_role("status")).to_have_text("Fields saved.")
    await expect(page.locator("dl.facts")).to_contain_text("Sleep")
    await expect(page.locator("dl.facts")).to_contain_text("Yes")
    await page.get_by_label("How").select_option("phone")
    await page.get_by_label("What was said").fill("Called to move next week's session.")
    await page.get_by_role("button", name="Log contact").click()
    await expect(page.get_by_role("status")).to_have_text("Contact logged.")
    await expect(page.locator(".events .event").first).to_contain_text("Called to move next week's session.")
    await expect(page.locator("section[aria-labelledby=payments-title]").get_by_role(
        "link", name=re.compile("View in Stripe")).first).to_have_attribute("href", re.compile(
            r"^https://dashboard\.stripe\.com/test/payments/"))
    await page.screenshot(path=SHOTS / "customer-relationship-desktop.png", full_page=True)

    phone = await browser.new_context(**PHONE, storage_state=await context.storage_state())
    mobile = await phone.new_page()
    await mobile.goto(page.url.split("?")[0])
    assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await mobile.screenshot(path=SHOTS / "customer-relationship-phone.png", full_page=True)
    await phone.close()

    # the list, filtered by the tag: only Ana; then the archive
    await page.goto(f"{site}/customers")
    await page.get_by_label("Filter by tag").fill("vip")
    await page.get_by_role("button", name="Add filter").click()
    await expect(page.locator("table.customers tbody tr")).to_have_count(1)
    await expect(page.locator("table.customers tbody tr").first).to_contain_text("Ana Silva")
    await page.screenshot(path=SHOTS / "customers-tag-filter-desktop.png", full_page=True)
    await page.get_by_role("link", name="Ana Silva").click()
    await page.get_by_role("button", name="Archive").click()
    await expect(page.get_by_role("status")).to_contain_text("Customer archived.")
    await page.goto(f"{site}/customers")
    await expect(page.locator("table.customers tbody tr")).to_have_count(len(PEOPLE) - 1)
    await page.get_by_role("link", name="Archived customers").click()
    await expect(page.locator("table.customers tbody tr")).to_have_count(1)
    await page.get_by_role("link", name="Ana Silva").click()
    await page.get_by_role("button", name="Move back to the list").click()
    await expect(page.get_by_role("status")).to_contain_text("Customer back in your list.")
    await page.goto(f"{site}/customers")
    await expect(page.locator("table.customers tbody tr")).to_have_count(len(PEOPLE))
    await context.close()


async def test_insights_page_shows_cards_charts_and_their_tables_on_a_desktop_and_a_phone(site, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, elsewhere = await signed_in(browser, site, {"width": 1280, "height": 900})
    await page.locator(".page-head").get_by_role("link", name="Insights").click()
    await expect(page.get_by_role("heading", name="Insights", level=1)).to_be_visible()
    await expect(page.locator(".kpis li")).not_to_have_count(0)
    revenue = page.get_by_role("img", name=re.compile("^Revenue by month"))
    await expect(revenue).to_be_visible()
    assert await revenue.locator("rect").count() > 0  # the demo's payments are drawn
    await expect(page.get_by_role("img", name=re.compile("^New and returning customers by month"))).to_be_visible()
    await expect(page.locator(".chart-summary").first).to_contain_text("net of refunds")
    await page.get_by_text("Customers as a table").click()
    await expect(page.get_by_role("table", name="New and returning customers by month")).to_be_visible()
    await page.screenshot(path=SHOTS / "insights-desktop.png", full_page=True)
    phone = await browser.new_context(**PHONE, storage_state=await context.storage_state())
    mobile = await phone.new_page()
    await mobile.goto(f"{site}/insights")
    await expect(mobile.get_by_role("img", name=re.compile("^Revenue by month"))).to_be_visible()
    assert await mobile.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await mobile.screenshot(path=SHOTS / "insights-phone.png", full_page=True)
    await mobile.goto(f"{site}/insights?from=2026-13")  # a bad range: the default months instead
    await expect(mobile).to_have_url(f"{site}/insights")
    assert elsewhere == []
    await phone.close()
    await context.close()


async def test_custom_fields_are_added_renamed_reordered_and_removed_from_the_settings_page(site, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, elsewhere = await signed_in(browser, site, {"width": 1280, "height": 900})
    await page.locator(".page-head").get_by_role("link", name="Custom fields").click()
    await expect(page.get_by_role("heading", name="Custom fields", level=1)).to_be_visible()
    fields = page.locator(".field-def")
    before = await fields.count()

    await page.get_by_label("Label", exact=True).last.fill("Date of birth")
    await page.get_by_label("Type").select_option("date")
    await page.get_by_role("button", name="Add field").click()
    await expect(page.get_by_role("status")).to_have_text("Field added.")
    await expect(fields).to_have_count(before + 1)
    await expect(fields.last).to_contain_text("date_of_birth")

    # a choice field without choices is refused as the API refuses it, and what was typed stays
    await page.locator("#new-label").fill("Session type")
    await page.get_by_label("Type").select_option("choice")
    await page.get_by_role("button", name="Add field").click()
    await expect(page.get_by_role("alert")).to_contain_text("Session type: a choice field needs choices")
    await expect(page.locator("#new-label")).to_have_value("Session type")
    await page.locator("#new-choices").fill("Online, In person")
    await page.get_by_role("button", name="Add field").click()
    await expect(page.get_by_role("status")).to_have_text("Field added.")
    await expect(fields).to_have_count(before + 2)

    await page.locator("#label-date_of_birth").fill("Birthday")
    await page.get_by_role("button", name="Save labels and choices").click()
    await expect(page.get_by_role("status")).to_have_text("Fields saved.")
    await expect(page.locator("#label-date_of_birth")).to_have_value("Birthday")
    await page.get_by_role("button", name="Move Session type up").click()
    await expect(page.get_by_role("status")).to_have_text("Order saved.")
    keys = await fields.evaluate_all("els => els.map(e => e.dataset.key)")
    assert keys[-2:] == ["session_type", "date_of_birth"], keys
    await page.screenshot(path=SHOTS / "settings-fields-desktop.png", full_page=True)
    await page.get_by_role("button", name="Remove Birthday").click()
    await expect(page.get_by_role("status")).to_contain_text("Field removed.")
    await expect(fields).to_have_count(before + 1)

    # the customer's page offers the field, and leads back to the settings
    await page.goto(f"{site}/customers?sort=name&order=asc")
    await page.get_by_role("link", name="Carla Mendes").click()
    await page.get_by_label("Session type").select_option("Online")
    await page.get_by_role("button", name="Save fields").click()
    await expect(page.locator("dl.facts")).to_contain_text("Online")
    await page.get_by_role("link", name="Edit the fields").click()
    await expect(page).to_have_url(f"{site}/settings/fields")
    assert elsewhere == []
    await context.close()


async def fits(page, what: str) -> None:
    """No sideways scroll, and nothing of the header (the sign-out button last) off the screen."""
    width = await page.evaluate("window.innerWidth")
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    right = await page.get_by_role("button", name="Sign out").evaluate("e => e.getBoundingClientRect().right")
    assert scroll <= width and right <= width, f"{what} at {width} px: page {scroll} px wide, sign-out ends at {right}"


async def test_the_lapsed_filter_and_every_page_at_360_and_390_px(site, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, _elsewhere = await signed_in(browser, site, {"width": 1280, "height": 900})
    await page.get_by_role("navigation", name="Status").get_by_role("link", name="Lapsed").click()
    rows = page.locator("table.customers tbody tr")
    await expect(rows).to_have_count(3)  # the demo's David, Eva and Hugo: no visit in 90 days, none booked
    for name in ("David Rocha", "Eva Lopes", "Hugo Ramos"):
        await expect(page.locator("table.customers")).to_contain_text(name)
    await expect(page.locator("table.customers .status-lapsed")).to_have_count(3)
    await expect(page.locator("#result-count")).to_contain_text("Lapsed.")
    await page.screenshot(path=SHOTS / "customers-lapsed-desktop.png", full_page=True)
    await page.get_by_role("link", name="Eva Lopes").click()
    await expect(page.locator("#person-name .status")).to_have_text("Lapsed")
    detail = page.url

    for width in (360, 390):
        phone = await browser.new_context(**{**PHONE, "viewport": {"width": width, "height": 800}},
                                          storage_state=await context.storage_state())
        mobile = await phone.new_page()
        for name, path in (("customers", "/customers"), ("lapsed", "/customers?status=lapsed"),
                           ("customer-detail", detail.removeprefix(site)), ("insights", "/insights"),
                           ("settings-fields", "/settings/fields")):
            await mobile.goto(f"{site}{path}")
            await expect(mobile.locator("h1")).to_be_visible()
            await fits(mobile, name)
            if width == 390:
                await mobile.screenshot(path=SHOTS / f"{name}-phone-390.png", full_page=True)
        await phone.close()
    await context.close()


async def test_a_duplicate_is_merged_from_the_detail_page_and_split_again(site, browser):
    """Ana booked once more under her home email: two customers, until the expert merges them."""
    from datetime import datetime, timedelta, timezone

    from testing import samples as s

    stack = STACKS[site]
    start = (datetime.now(timezone.utc) - timedelta(days=15)).replace(minute=0, second=0, microsecond=0)
    extra = s.booking_created(EXPERT, "mtg_demo_home", "ana.s@home.example", "Ana Silva", start,
                              occurred_at=start - timedelta(days=10))
    assert (await stack.post_bookings([extra])).status_code == 202

    async def both():
        body = (await stack.api.get("/api/customers", params={"q": "ana"}, headers=stack.auth(EXPERT))).json()
        found = {c["email"]: c["id"] for c in body["customers"]}
        return found if len(found) == 2 else None
    ids = await eventually(both)
    ana, home = ids["ana.silva@example.com"], ids["ana.s@home.example"]

    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, elsewhere = await signed_in(browser, site, {"width": 1280, "height": 900})
    await page.goto(f"{site}/customers/{ana}")
    await page.get_by_role("link", name="Merge a duplicate into this customer").click()
    await page.get_by_label("The other customer’s email").fill("ana.s@home.example")
    await page.get_by_role("button", name="Find them").click()
    await expect(page.get_by_role("region", name="Keeps this page")).to_contain_text("ana.silva@example.com")
    await expect(page.get_by_role("region", name="Merged into it")).to_contain_text("ana.s@home.example")
    await page.screenshot(path=SHOTS / "merge-confirm-desktop.png", full_page=True)
    await page.get_by_role("button", name="Merge them").click()
    await expect(page.get_by_role("status")).to_contain_text("Merged.")
    await expect(page).to_have_url(re.compile(rf"/customers/{ana}\?"))
    await expect(page.locator(".merged-emails")).to_contain_text("ana.s@home.example")
    await page.screenshot(path=SHOTS / "merged-customer-desktop.png", full_page=True)

    # the duplicate's page is the survivor's now, and the list has one Ana
    await page.goto(f"{site}/customers/{home}")
    await expect(page).to_have_url(f"{site}/customers/{ana}")
    await page.goto(f"{site}/customers?q=ana")
    await expect(page.locator("table.customers tbody tr")).to_have_count(1)

    await page.goto(f"{site}/customers/{ana}")
    await page.get_by_role("button", name="Split ana.s@home.example off again").click()
    await expect(page.get_by_role("status")).to_contain_text("Split.")
    await page.goto(f"{site}/customers?q=ana")
    await expect(page.locator("table.customers tbody tr")).to_have_count(2)
    assert elsewhere == []
    await context.close()
