"""Money as people read it. Amounts are kept as integers in the currency's minor unit (the
`*_cents` fields: cents of EUR, yen of JPY, fils of KWD: Stripe's "smallest currency unit"),
so how many decimals an amount has depends on its currency (ISO 4217): JPY has none, KWD three,
most currencies two."""

from __future__ import annotations

DEFAULT_MINOR_UNITS = 2

# ISO 4217 currencies whose minor unit is not 1/100 (the list's exponent); every other code,
# known or not, has two decimals.
MINOR_UNITS: dict[str, int] = {
    # no minor unit
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # thousandths
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # ten-thousandths (units of account)
    "CLF": 4,
    "UYW": 4,
}


def minor_units(currency: str) -> int:
    """How many decimals an amount in `currency` has (ISO 4217 exponent; 2 if not listed)."""
    return MINOR_UNITS.get(currency.strip().upper(), DEFAULT_MINOR_UNITS)


def amount(minor: int, currency: str) -> str:
    """An amount of minor units in the currency's units, without the code, grouped in
    thousands: 4500 EUR -> "45.00", 4500 JPY -> "4,500", 12345 KWD -> "12.345"."""
    decimals = minor_units(currency)
    sign = "-" if minor < 0 else ""
    units, fraction = divmod(abs(minor), 10**decimals)
    text = f"{units:,}"
    if decimals:
        text += f".{fraction:0{decimals}d}"
    return sign + text


def plain_amount(minor: int, currency: str) -> str:
    """Like `amount` without the thousands separator (for CSV: a spreadsheet reads it as a
    number): 123456 EUR -> "1234.56", -250 EUR -> "-2.50", 4500 JPY -> "4500"."""
    return amount(minor, currency).replace(",", "")


def money(minor: int, currency: str) -> str:
    """An amount with its currency code: "45.00 EUR", "4,500 JPY", "12.345 KWD"."""
    code = currency.strip().upper()
    return f"{amount(minor, code)} {code}".strip()
