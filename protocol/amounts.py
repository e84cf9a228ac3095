"""Amounts: integer minor units inside, decimal strings ("12.34") at the edges. Never floats."""

from __future__ import annotations

import re

from protocol.limits import MAX_AMOUNT

#: Minor units per unit (cents).
SCALE = 100
_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,18})(?:\.([0-9]{1,2}))?\Z")


class AmountError(ValueError):
    """Text that is not a valid positive amount."""


def parse_amount(text: str) -> int:
    """Minor units of a decimal string with at most two decimals ("12", "12.3", "12.34")."""
    if not isinstance(text, str):
        raise AmountError('an amount is a decimal string such as "12.34"')
    match = _AMOUNT_RE.match(text)
    if match is None:
        raise AmountError(f'{text!r} is not an amount such as "12.34" (at most two decimals)')
    units = int(match.group(1)) * SCALE + int((match.group(2) or "0").ljust(2, "0"))
    if units <= 0:
        raise AmountError("an amount must be greater than zero")
    if units > MAX_AMOUNT:
        raise AmountError("amount too large")
    return units


def format_amount(units: int) -> str:
    """The decimal string of an amount in minor units (always two decimals)."""
    sign = "-" if units < 0 else ""
    whole, cents = divmod(abs(units), SCALE)
    return f"{sign}{whole}.{cents:02d}"
