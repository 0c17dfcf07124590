"""Building blocks shared by the declarative definitions that operators write as JSON (points earn
rules, coupon rules): models that refuse unknown keys and are immutable, and decimals that must be
spelled as strings, so that no amount reaches a rule through a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ConfigDict

CENT = Decimal("0.01")

DEFINITION_MODEL = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True)


def no_float(value: Any) -> Any:
    """Before-validator of a decimal: a float has already lost the fen it was meant to carry."""
    if isinstance(value, float):
        raise ValueError('give decimal numbers as strings such as "10.00", not as floats')
    return value


def to_cent(value: Decimal) -> Decimal:
    """After-validator of an amount: exactly to the fen."""
    return value.quantize(CENT)
