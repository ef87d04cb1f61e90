"""Card numbers in free text: found by digits and the Luhn check, replaced by a mask.

One scan for everything the service writes: log lines, dead letters, and every free text an
event or command carries (`CardSafe`: masked when the model is validated, so before the intake
or the API publishes it, and again when the worker decodes it).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d)*")  # digits, in groups split by one space or dash
GROUP = re.compile(r"\d+")
MASK = "[card number]"  # 13 characters: never longer than the 13 to 19 digits it replaces


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _mask_run(run: str) -> str:
    """Mask every card number in one run of digit groups.

    A card number is 13 to 19 digits passing the Luhn check, made of whole groups: written in
    one piece or as people type it ("4242 4242 4242 4242", "3782-822463-10005"), possibly with
    other numbers beside it in the same run. A group is never cut, so a long number in one
    piece (an id, an amount) is left alone.
    """
    groups = [(g.start(), g.end()) for g in GROUP.finditer(run)]
    out, done, i = [], 0, 0
    while i < len(groups):
        card, digits = None, ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0]:groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn(digits):
                card = j  # the longest card starting at group i wins
        if card is None:
            i += 1
            continue
        out += [run[done:groups[i][0]], MASK]
        done, i = groups[card][1], card + 1
    return "".join(out) + run[done:]


def mask_card_numbers(text: str) -> str:
    """Mask card numbers (13 to 19 digits passing the Luhn check, in one piece or in groups)."""
    return DIGIT_RUN.sub(lambda m: _mask_run(m.group(0)), text)


CardSafe = Annotated[str, AfterValidator(mask_card_numbers)]
"""Free text that is published or stored (note bodies, summaries, subjects, reasons, tags, field
labels, choices and values): card numbers masked whenever a model validates it. Constraints given
with `= Field(...)` apply to the text as written, before the mask."""
