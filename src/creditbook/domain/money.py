"""Exact money: a Decimal amount with its currency, built through one constructor.

Floats never enter: ``Money.of`` accepts ``Decimal``, ``int`` or a decimal
string and quantizes to the currency's minor unit, refusing anything finer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from creditbook.domain.errors import InvalidAmount

# Minor-unit exponent per currency; ISO 4217 zero-decimal currencies listed.
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "XOF", "XAF", "UGX"})


def minor_unit_exponent(currency: str) -> int:
    return 0 if currency.upper() in _ZERO_DECIMAL else 2


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency, quantized to its minor unit."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        if isinstance(amount, (float, bool)):
            raise InvalidAmount(
                "money must be a Decimal, an int or a decimal string, never a float"
            )
        code = currency.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise InvalidAmount(f"currency {currency!r} is not a 3-letter ISO 4217 code")
        try:
            value = Decimal(amount)
        except (InvalidOperation, ValueError) as exc:
            raise InvalidAmount(f"amount {amount!r} is not a decimal number") from exc
        if not value.is_finite():
            raise InvalidAmount(f"amount {amount!r} is not a finite number")
        quantum = Decimal(1).scaleb(-minor_unit_exponent(code))
        try:
            quantized = value.quantize(quantum)
        except InvalidOperation as exc:
            raise InvalidAmount(f"amount {amount} is too large") from exc
        if quantized != value:
            raise InvalidAmount(f"amount {amount} has more decimals than {code} allows")
        return cls(quantized, code)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        code = currency.upper()
        return cls.of(Decimal(minor).scaleb(-minor_unit_exponent(code)), code)

    @property
    def minor_units(self) -> int:
        return int(self.amount.scaleb(minor_unit_exponent(self.currency)))

    def times(self, factor: int) -> Money:
        """This amount multiplied by a whole number (a price per credit by credits)."""
        return Money.of(self.amount * factor, self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
