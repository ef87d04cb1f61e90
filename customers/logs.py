"""Structured JSON logs that carry no personal data: emails are pseudonymised, card numbers masked.

Card numbers are masked by `customers.cards.mask_card_numbers`, the one scan the service also
applies to the free text it stores or forwards.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

from customers.cards import mask_card_numbers
from customers.ids import email_hash

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def scrub(text: str, key: str | None = None) -> str:
    """Replace emails by a pseudonym and card numbers by a mask.

    The pseudonym is the start of the email's keyed hash (`customers.ids.email_hash` with
    `CUSTOMER_ID_SECRET`): one person reads the same in every line and process, and nobody
    without the key can find it by hashing a list of addresses. Without a key, emails are
    only redacted.
    """
    text = EMAIL.sub(lambda m: "email:" + (email_hash(key, m.group(0))[:12] if key else "redacted"), text)
    return mask_card_numbers(text)


class JsonFormatter(logging.Formatter):
    def __init__(self, *args, key: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.key = key

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage(), self.key),
        }
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info), self.key)
        return json.dumps(entry)


def configure(level: str = "INFO", key: str | None = None) -> None:
    """JSON lines on stderr; `key` (CUSTOMER_ID_SECRET) makes the email pseudonyms."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(key=key))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
