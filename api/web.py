"""What the pages share: templates and their filters, the signed-in expert, safe redirects."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates

from api.auth import COOKIE, SAFE_METHODS, Principal, VerifierDep, same_origin

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
SYMBOLS = {"eur": "€", "usd": "$", "gbp": "£", "brl": "R$", "jpy": "¥", "chf": "CHF ", "aud": "A$", "cad": "C$"}


class SignInRequired(Exception):
    """A page was asked for without a valid session."""


def money(amount: int | None, currency: str | None) -> str:
    """Minor units as a human amount: 14000 eur -> €140.00 (exact, no floats)."""
    if amount is None or not currency:
        return "—"
    cur = currency.lower()
    places = 0 if cur in ZERO_DECIMAL else 3 if cur in THREE_DECIMAL else 2
    sign = "−" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10 ** places)
    text = f"{major:,}" + (f".{minor:0{places}d}" if places else "")
    return f"{sign}{SYMBOLS.get(cur, cur.upper() + ' ')}{text}"


def amounts(values) -> str:
    """A list of {currency, amount} as text, or a dash when empty."""
    parts = [money(a.amount, a.currency) for a in values]
    return " + ".join(parts) if parts else "—"


def day(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%-d %b %Y") if value else "—"


def when(value: datetime | None, tz: str | None = None) -> str:
    """Date and time in the appointment's own time zone (UTC when it has none)."""
    if value is None:
        return "—"
    try:
        zone = ZoneInfo(tz) if tz else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    local = value.astimezone(zone)
    return local.strftime("%a %-d %b %Y, %H:%M ") + (local.tzname() or "UTC")


def minutes(total: int) -> str:
    hours, mins = divmod(total, 60)
    if not hours:
        return f"{mins} min"
    return f"{hours} h {mins} min" if mins else f"{hours} h"


def iso(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).isoformat() if value else ""


def label(value: str) -> str:
    return value.replace("_", " ").capitalize()


def list_url(**params) -> str:
    """A link to the customers list; empty parameters left out, a list one parameter per value."""
    kept = {k: v for k, v in params.items() if v not in (None, "", [], ())}
    return "/customers" + (f"?{urlencode(kept, doseq=True)}" if kept else "")


templates.env.globals["list_url"] = list_url
templates.env.filters.update(money=money, amounts=amounts, day=day, when=when, minutes=minutes, iso=iso,
                             label=label)


def page_principal(request: Request, verifier: VerifierDep) -> Principal:
    """The signed-in expert of a page (session cookie), else `SignInRequired`."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired()
    try:
        principal = verifier.verify(token)
    except HTTPException as exc:
        raise SignInRequired() from exc
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    return principal


def local_path(target: str | None, default: str = "/customers") -> str:
    """`target` if it is a path on this site, else `default` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def sign_in_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/dev/sign-in?next={quote(here, safe='')}"
