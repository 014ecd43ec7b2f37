"""Pure billing math: currencies and rounding, anniversary periods, proration, price types and
seed-002 calc rules, tax resolution and extraction, invoice totals and voucher discounts.

No Django and no ORM here, only the standard library, so every rule is unit-tested exhaustively.
Money is an ``int`` of minor units at every boundary and a ``Decimal`` inside a computation; a float
anywhere is a ``TypeError``, because a float cannot hold 0.1 and billing must be exact. Each amount
is computed exactly and rounded once, half-up (half away from zero for negatives), to the minor
unit. Datetimes are timezone-aware UTC; naive ones are a ``ValueError`` because a period boundary
without an offset is ambiguous.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import StrEnum
from itertools import pairwise
from types import MappingProxyType

__all__ = [
    "EU_COUNTRIES",
    "ISO_4217_EXPONENTS",
    "CalcRule",
    "Line",
    "PriceType",
    "Schedule",
    "Step",
    "TaxDecision",
    "TaxReason",
    "Tier",
    "UnknownCurrencyError",
    "active_fraction",
    "add_interval",
    "calc_rule_amount",
    "calc_rule_charge",
    "commit_in_advance",
    "currency_exponent",
    "discount_amount",
    "format_money",
    "invoice_totals",
    "is_valid_currency",
    "parse_steps",
    "parse_tiers",
    "period_bounds",
    "period_containing",
    "price_amount",
    "price_amount_unrounded",
    "prorate",
    "prorated_change",
    "proration_factor",
    "resolve_tax_rate",
    "round_minor",
    "tax_for_line",
    "to_minor",
    "validate_steps",
    "validate_tiers",
]

# Products of Decimals are computed in this context. Trapping Inexact means a product is either
# exact or an error: an amount is never silently rounded before the one rounding we intend.
_EXACT = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

# Ratios (proration, active share) are returned as Decimals for display and composition; 50
# significant digits keep their own rounding far below a millionth of a minor unit.
_RATIO = Context(prec=50, traps=[InvalidOperation, DivisionByZero, Overflow])

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


# --- Input checks ------------------------------------------------------------------------------
# bool is an int subclass; True as an amount is always a caller bug, so it is refused like float.


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _decimal(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal or int, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number")
    return result


def _non_negative(value: object, name: str) -> Decimal:
    result = _decimal(value, name)
    if result < 0:
        raise ValueError(f"{name} must not be negative")
    return result


def _words(text: str) -> list[str]:
    return text.split()


def _choice(kind: type[StrEnum], value: object, name: str) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(kind)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


def _div_round_half_up(numerator: int, denominator: int) -> int:
    """Exact integer division rounded half away from zero: the single rounding of every amount."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


# --- Currencies --------------------------------------------------------------------------------


class UnknownCurrencyError(ValueError, KeyError):
    """Both a ValueError (for serializers that turn it into a 400) and a KeyError (a table miss)."""

    __str__ = ValueError.__str__


# Minor-unit exponents of the active ISO 4217 codes that have a minor unit (metals, SDR and test
# codes have none and cannot be billed). Most currencies have 2, so only the others are listed
# with their exponent; the 2-digit codes follow.
_EXPONENT_0 = _words("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_EXPONENT_3 = _words("BHD IQD JOD KWD LYD OMR TND")
_EXPONENT_4 = _words("CLF UYW")
_EXPONENT_2 = _words(
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP "
    "GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK "
    "LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK "
    "NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD "
    "SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG "
    "YER ZAR ZMW ZWG ZWL"
)

ISO_4217_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(_EXPONENT_2, 2),
        **dict.fromkeys(_EXPONENT_0, 0),
        **dict.fromkeys(_EXPONENT_3, 3),
        **dict.fromkeys(_EXPONENT_4, 4),
    }
)


def currency_exponent(code: str) -> int:
    """Digits after the decimal point of ``code``; codes are upper-case as in the API."""
    try:
        return ISO_4217_EXPONENTS[code]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(f"unknown currency {code!r}") from None


def is_valid_currency(code: object) -> bool:
    return isinstance(code, str) and code in ISO_4217_EXPONENTS


def round_minor(amount: Decimal, currency: str) -> int:
    """Round an amount already in minor units, half-up, to the int that is stored.

    The currency is not needed for the arithmetic; it is checked so that an amount is never rounded
    for a currency the platform cannot bill.
    """
    currency_exponent(currency)
    value = _decimal(amount, "amount")
    return _div_round_half_up(*value.as_integer_ratio())


def to_minor(major: Decimal, currency: str) -> int:
    """A major-unit amount (``Decimal("18.18")`` EUR) in minor units (1818), rounded once."""
    exponent = currency_exponent(currency)
    value = _decimal(major, "major")
    with localcontext(_EXACT):
        return round_minor(value.scaleb(exponent), currency)


_SYMBOLS = MappingProxyType({"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"})
# language: (thousands separator, decimal separator, symbol before the number)
_LOCALES = MappingProxyType(
    {"en": (",", ".", True), "de": (".", ",", False), "fr": (" ", ",", False)}
)


def format_money(minor: int, currency: str, locale: str = "en") -> str:
    """Human-readable amount for invoices and e-mails: ``€18.18``, ``18,18 €``, ``BHD 1.234``.

    Only the language part of ``locale`` is used ("de-AT" formats as "de"); unknown languages format
    as English, so a customer's locale can never break an invoice.
    """
    exponent = currency_exponent(currency)
    value = _int(minor, "minor")
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    thousands, decimal_mark, symbol_first = _LOCALES.get(language, _LOCALES["en"])
    whole, fraction = divmod(abs(value), 10**exponent)
    number = f"{whole:,}".replace(",", thousands)
    if exponent:
        number += decimal_mark + str(fraction).zfill(exponent)
    sign = "-" if value < 0 else ""
    symbol = _SYMBOLS.get(currency)
    if symbol_first:
        return f"{sign}{symbol}{number}" if symbol else f"{sign}{currency} {number}"
    return f"{sign}{number} {symbol or currency}"


# --- Periods -----------------------------------------------------------------------------------


class Schedule(StrEnum):
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


def _utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    if offset:
        raise ValueError(f"{name} must be in UTC, got offset {offset}")
    return value


def add_interval(anchor: datetime, schedule: str, n: int) -> datetime:
    """The start of period ``n`` of a subscription anchored at ``anchor``.

    Always computed from the anchor, never from the previous period: chaining would let a Jan 31
    anchor decay to Feb 28, Mar 28, Apr 28... Month ends clamp to the month's last day, and the time
    of day is kept.
    """
    anchor = _utc(anchor, "anchor")
    n = _int(n, "n")
    kind = _choice(Schedule, schedule, "schedule")
    if kind is Schedule.WEEK:
        return anchor + timedelta(weeks=n)
    months = n if kind is Schedule.MONTH else 12 * n
    year, month_index = divmod(anchor.year * 12 + (anchor.month - 1) + months, 12)
    month = month_index + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, schedule: str, n: int) -> tuple[datetime, datetime]:
    """``[start, end)`` of period ``n`` (0 is the first); period n's end is period n+1's start."""
    if _int(n, "n") < 0:
        raise ValueError("period number must not be negative")
    return add_interval(anchor, schedule, n), add_interval(anchor, schedule, n + 1)


def period_containing(
    anchor: datetime, schedule: str, at: datetime
) -> tuple[int, datetime, datetime]:
    """``(n, start, end)`` of the period with ``start <= at < end``."""
    anchor = _utc(anchor, "anchor")
    at = _utc(at, "at")
    kind = _choice(Schedule, schedule, "schedule")
    if at < anchor:
        raise ValueError("at is before the anchor: no period contains it")
    if kind is Schedule.WEEK:
        n = (at - anchor) // timedelta(weeks=1)
    else:
        months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
        n = months if kind is Schedule.MONTH else months // 12
    # The estimate is off by at most one because of clamping and the time of day.
    while n > 0 and add_interval(anchor, kind, n) > at:
        n -= 1
    while add_interval(anchor, kind, n + 1) <= at:
        n += 1
    start, end = period_bounds(anchor, kind, n)
    return n, start, end


# --- Proration ---------------------------------------------------------------------------------


def _microseconds(delta: timedelta) -> int:
    # timedelta.total_seconds() is a float; integer microseconds keep proration exact.
    return delta // timedelta(microseconds=1)


def _remaining_and_length(
    period_start: datetime, period_end: datetime, at: datetime
) -> tuple[int, int]:
    period_start = _utc(period_start, "period_start")
    period_end = _utc(period_end, "period_end")
    at = _utc(at, "at")
    length = _microseconds(period_end - period_start)
    if length <= 0:
        raise ValueError("period_end must be after period_start")
    remaining = _microseconds(period_end - min(max(at, period_start), period_end))
    return remaining, length


def proration_factor(period_start: datetime, period_end: datetime, at: datetime) -> Decimal:
    """Share of the period still to run after ``at``, in [0, 1], measured to the microsecond."""
    remaining, length = _remaining_and_length(period_start, period_end, at)
    with localcontext(_RATIO):
        return Decimal(remaining) / Decimal(length)


def prorate(
    amount_minor: int,
    period_start: datetime,
    period_end: datetime,
    change_at: datetime,
    currency: str,
) -> int:
    """The part of a full-period amount owed for the time left after ``change_at``, rounded once.

    Computed as one exact integer division (amount * remaining / length), so the factor's own
    decimal expansion never adds a second rounding.
    """
    currency_exponent(currency)
    amount = _int(amount_minor, "amount_minor")
    remaining, length = _remaining_and_length(period_start, period_end, change_at)
    return _div_round_half_up(amount * remaining, length)


def prorated_change(
    old_amount: int,
    new_amount: int,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    currency: str,
) -> tuple[int, int]:
    """``(credit, charge)`` for a mid-period plan, price or seat change.

    The credit (<= 0) returns the unused time of the old amount and the charge (>= 0) bills the
    remaining time of the new one. They are rounded separately because they become two invoice
    lines; the same amount on both sides nets to exactly zero.
    """
    for name, value in (("old_amount", old_amount), ("new_amount", new_amount)):
        if _int(value, name) < 0:
            raise ValueError(f"{name} must not be negative")
    credit = -prorate(old_amount, period_start, period_end, at, currency)
    charge = prorate(new_amount, period_start, period_end, at, currency)
    return credit, charge


def active_fraction(
    active_from: datetime | None,
    active_to: datetime | None,
    period_start: datetime,
    period_end: datetime,
) -> Decimal:
    """Share of ``[period_start, period_end)`` inside ``[active_from, active_to)``.

    ``None`` leaves that side open (``active_to`` null means open-ended in seed 002).
    """
    period_start = _utc(period_start, "period_start")
    period_end = _utc(period_end, "period_end")
    length = _microseconds(period_end - period_start)
    if length <= 0:
        raise ValueError("period_end must be after period_start")
    start = (
        period_start if active_from is None else max(_utc(active_from, "active_from"), period_start)
    )
    end = period_end if active_to is None else min(_utc(active_to, "active_to"), period_end)
    inside = max(0, _microseconds(end - start))
    with localcontext(_RATIO):
        return Decimal(inside) / Decimal(length)


# --- Price types (catalog prices) --------------------------------------------------------------


class PriceType(StrEnum):
    FIXED_PRICE = "fixed_price"
    PER_UNIT = "per_unit"
    PACKAGE = "package"
    TIERED_VOLUME = "tiered_volume"
    TIERED_GRADUATED = "tiered_graduated"


@dataclass(frozen=True)
class Tier:
    """Units ``first_unit..last_unit`` (inclusive, counted from 1; ``None`` = no upper bound).

    For fractional usage a tier covers the continuous range ``(first_unit - 1, last_unit]``.
    ``unit_price`` is in minor units and may be a fraction of one; ``flat_fee`` is charged once when
    the tier is reached.
    """

    first_unit: int
    last_unit: int | None
    unit_price: Decimal
    flat_fee: int = 0


def _as_tier(raw: object, index: int) -> Tier:
    if isinstance(raw, Tier):
        return raw
    if isinstance(raw, Sequence) and not isinstance(raw, str) and len(raw) in (3, 4):
        return Tier(*raw)
    raise TypeError(
        f"tiers[{index}] must be a Tier or a (first_unit, last_unit, unit_price, flat_fee)"
    )


def validate_tiers(tiers: Iterable[object]) -> tuple[Tier, ...]:
    """Check that tiers start at 1, are contiguous and that the last one, and only it, is
    open-ended, so that every quantity falls in exactly one tier.

    Raises ValueError with a message fit for a 400 answer; returns the tiers as ``Tier`` objects.
    """
    result = tuple(_as_tier(raw, i) for i, raw in enumerate(tiers))
    if not result:
        raise ValueError("tiers must not be empty")
    expected_first = 1
    for i, tier in enumerate(result):
        first = _int(tier.first_unit, f"tiers[{i}].first_unit")
        if first != expected_first:
            raise ValueError(
                f"tiers[{i}].first_unit must be {expected_first}"
                + (" (tiers start at unit 1)" if i == 0 else " (tiers must be contiguous)")
            )
        if tier.last_unit is None:
            if i != len(result) - 1:
                raise ValueError(f"tiers[{i}].last_unit may only be open-ended on the last tier")
        elif i == len(result) - 1:
            raise ValueError(f"tiers[{i}].last_unit must be null: the last tier is open-ended")
        else:
            last = _int(tier.last_unit, f"tiers[{i}].last_unit")
            if last < first:
                raise ValueError(f"tiers[{i}].last_unit must not be below its first_unit")
            expected_first = last + 1
        _non_negative(tier.unit_price, f"tiers[{i}].unit_price")
        if _int(tier.flat_fee, f"tiers[{i}].flat_fee") < 0:
            raise ValueError(f"tiers[{i}].flat_fee must not be negative")
    return result


def _parse_decimal(value: object, name: str) -> Decimal:
    # A JSON number arrives as a float and may already have lost digits ("0.1" is not 0.1), so
    # the API takes decimal strings; integers are exact and accepted too.
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} must be a decimal string") from None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise ValueError(f"{name} must be a decimal string, not {type(value).__name__}")
    return _decimal(value, name)


def _parse_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _parse_field(raw: object, index: int, field: str, collection: str) -> object:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{collection}[{index}] must be an object")
    if field not in raw:
        raise ValueError(f"{collection}[{index}].{field} is required")
    return raw[field]


def parse_tiers(raw_tiers: Iterable[object]) -> tuple[Tier, ...]:
    """Tiers from the API's JSON (``unit_price`` a decimal string, ``last_unit`` null = infinity),
    validated. Every fault is a ValueError, since the input is a client's."""
    tiers = []
    for i, raw in enumerate(raw_tiers):
        first = _parse_field(raw, i, "first_unit", "tiers")
        price = _parse_field(raw, i, "unit_price", "tiers")
        last, flat_fee = raw.get("last_unit"), raw.get("flat_fee")
        tiers.append(
            Tier(
                first_unit=_parse_int(first, f"tiers[{i}].first_unit"),
                last_unit=None if last is None else _parse_int(last, f"tiers[{i}].last_unit"),
                unit_price=_parse_decimal(price, f"tiers[{i}].unit_price"),
                flat_fee=0 if flat_fee is None else _parse_int(flat_fee, f"tiers[{i}].flat_fee"),
            )
        )
    return validate_tiers(tiers)


def price_amount_unrounded(
    price_type: str,
    quantity: Decimal,
    *,
    amount: Decimal | int | None = None,
    units: int | None = None,
    tiers: Iterable[object] | None = None,
) -> Decimal:
    """Exact amount in minor units of a catalog price for ``quantity`` units over one period.

    - fixed_price: ``amount`` whatever the quantity (a per-seat fee is per_unit with the seats as
      quantity).
    - per_unit: ``quantity * amount``.
    - package: ``amount`` per started package of ``units`` units.
    - tiered_volume: every unit at the tier that holds ``quantity``, plus that tier's flat fee.
    - tiered_graduated: each unit at the tier it falls in, plus the flat fee of each tier reached.

    Zero units cost nothing except for fixed_price.
    """
    kind = _choice(PriceType, price_type, "price type")
    q = _non_negative(quantity, "quantity")
    with localcontext(_EXACT):
        if kind in (PriceType.FIXED_PRICE, PriceType.PER_UNIT, PriceType.PACKAGE):
            if amount is None:
                raise ValueError(f"a {kind} price needs an amount")
            price = _non_negative(amount, "amount")
            if kind is PriceType.FIXED_PRICE:
                return price
            if kind is PriceType.PER_UNIT:
                return q * price
            if units is None or _int(units, "units") <= 0:
                raise ValueError("a package price needs units (the package size) of at least 1")
            numerator, denominator = q.as_integer_ratio()
            started_packages = -(-numerator // (denominator * units))
            return started_packages * price
        if tiers is None:
            raise ValueError(f"a {kind} price needs tiers")
        checked = validate_tiers(tiers)
        if q == 0:
            return _ZERO
        if kind is PriceType.TIERED_VOLUME:
            # Tiers ascend and the last is open-ended, so the first tier reaching q holds it.
            tier = next(t for t in checked if t.last_unit is None or q <= t.last_unit)
            return q * tier.unit_price + tier.flat_fee
        total = _ZERO
        for tier in checked:
            lower = Decimal(tier.first_unit - 1)
            if q <= lower:
                break
            upper = q if tier.last_unit is None else min(q, Decimal(tier.last_unit))
            total += (upper - lower) * tier.unit_price + tier.flat_fee
        return total


def price_amount(
    price_type: str,
    quantity: Decimal,
    *,
    amount: Decimal | int | None = None,
    units: int | None = None,
    tiers: Iterable[object] | None = None,
    currency: str,
) -> int:
    """``price_amount_unrounded`` rounded once to the currency's minor unit."""
    exact = price_amount_unrounded(price_type, quantity, amount=amount, units=units, tiers=tiers)
    return round_minor(exact, currency)


# --- Seed-002 calc rules (metered subscription items) ------------------------------------------


class CalcRule(StrEnum):
    UNIT = "unit"
    STEPPED = "stepped"
    STAGED = "staged"
    COMMIT = "commit"
    OVERCOMMIT = "overcommit"
    POST_INVOICE = "post_invoice"


@dataclass(frozen=True)
class Step:
    """From ``threshold`` units on, units cost ``money_value`` minor units each."""

    threshold: Decimal
    money_value: Decimal


def validate_steps(steps: Iterable[object]) -> tuple[Step, ...]:
    """Steps sorted by threshold, thresholds >= 0 and distinct, prices >= 0; else ValueError."""
    result = []
    for i, raw in enumerate(steps):
        if isinstance(raw, Step):
            step = raw
        elif isinstance(raw, Sequence) and not isinstance(raw, str) and len(raw) == 2:
            step = Step(*raw)
        else:
            raise TypeError(f"steps[{i}] must be a Step or a (threshold, money_value) pair")
        result.append(
            Step(
                threshold=_non_negative(step.threshold, f"steps[{i}].threshold"),
                money_value=_non_negative(step.money_value, f"steps[{i}].money_value"),
            )
        )
    if not result:
        raise ValueError("steps must not be empty")
    result.sort(key=lambda step: step.threshold)
    for before, after in pairwise(result):
        if before.threshold == after.threshold:
            raise ValueError(f"steps must have distinct thresholds ({before.threshold} repeats)")
    return tuple(result)


def parse_steps(raw_steps: Iterable[object]) -> tuple[Step, ...]:
    """Steps from seed 002's JSON (decimal strings), validated and sorted; faults: ValueError."""
    steps = []
    for i, raw in enumerate(raw_steps):
        threshold = _parse_field(raw, i, "threshold", "steps")
        money_value = _parse_field(raw, i, "money_value", "steps")
        steps.append(
            Step(
                threshold=_parse_decimal(threshold, f"steps[{i}].threshold"),
                money_value=_parse_decimal(money_value, f"steps[{i}].money_value"),
            )
        )
    return validate_steps(steps)


def _required(value: object, name: str, rule: CalcRule) -> Decimal:
    if value is None:
        raise ValueError(f"calc rule {rule} needs {name}")
    return _non_negative(value, name)


def calc_rule_amount(
    rule: str,
    usage: Decimal,
    money_value: Decimal | None = None,
    default_value: Decimal | None = None,
    steps: Iterable[object] | None = None,
) -> Decimal:
    """Exact amount in minor units owed in arrears for one closed period's usage.

    ``commit`` owes nothing here: its commitment is billed in advance by ``commit_in_advance``,
    whatever the usage. Stepped usage below the first threshold is free.
    """
    kind = _choice(CalcRule, rule, "calc_rule_type")
    u = _non_negative(usage, "usage")
    with localcontext(_EXACT):
        if kind in (CalcRule.UNIT, CalcRule.POST_INVOICE):
            return u * _required(money_value, "money_value", kind)
        if kind is CalcRule.COMMIT:
            return _ZERO
        if kind is CalcRule.OVERCOMMIT:
            committed = _required(default_value, "default_value", kind)
            return max(_ZERO, u - committed) * _required(money_value, "money_value", kind)
        if steps is None:
            raise ValueError(f"calc rule {kind} needs steps")
        ordered = validate_steps(steps)
        if kind is CalcRule.STAGED:
            reached = [step for step in ordered if step.threshold <= u]
            return u * reached[-1].money_value if reached else _ZERO
        total = _ZERO
        for step, following in zip(ordered, [*ordered[1:], None], strict=True):
            if u <= step.threshold:
                break
            upper = u if following is None else min(u, following.threshold)
            total += (upper - step.threshold) * step.money_value
        return total


def calc_rule_charge(
    rule: str,
    usage: Decimal,
    money_value: Decimal | None = None,
    default_value: Decimal | None = None,
    steps: Iterable[object] | None = None,
    *,
    currency: str,
) -> int:
    """``calc_rule_amount`` rounded once to the currency's minor unit."""
    return round_minor(calc_rule_amount(rule, usage, money_value, default_value, steps), currency)


def commit_in_advance(
    default_value: Decimal,
    money_value: Decimal,
    *,
    currency: str,
    share: Decimal = _ONE,
) -> int:
    """The commit charged at the start of a period: ``default_value * money_value``.

    ``share`` (an ``active_fraction``) bills only the part of the period the item is active, and is
    applied before the one rounding.
    """
    committed = _non_negative(default_value, "default_value")
    price = _non_negative(money_value, "money_value")
    fraction = _non_negative(share, "share")
    if fraction > 1:
        raise ValueError("share must be at most 1")
    with localcontext(_EXACT):
        return round_minor(committed * price * fraction, currency)


# --- Tax ---------------------------------------------------------------------------------------

EU_COUNTRIES: frozenset[str] = frozenset(
    _words("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK")
)


class TaxReason(StrEnum):
    CUSTOMER_RATE = "customer_rate"
    REVERSE_CHARGE = "reverse_charge"
    TENANT_COUNTRY_RULE = "tenant_country_rule"
    TENANT_DEFAULT = "tenant_default"


@dataclass(frozen=True)
class TaxDecision:
    rate: Decimal
    reverse_charge: bool
    reason: TaxReason


def _country(code: str | None) -> str | None:
    if not code:
        return None
    code = code.strip().upper()
    return "GR" if code == "EL" else code  # EU VAT numbers write Greece as EL


def _rate(value: object, name: str) -> Decimal:
    rate = _decimal(value, name)
    if rate < 0:
        raise ValueError(f"{name} must not be negative")
    return rate


def resolve_tax_rate(
    *,
    customer_rates: Mapping[str, Decimal | None],
    tenant_country_rules: Mapping[tuple[str, str], Decimal],
    tenant_default: Decimal,
    customer_country: str | None,
    tenant_country: str | None,
    tax_type: str,
    customer_is_business: bool,
    customer_tax_number: str | None,
) -> TaxDecision:
    """The tax rate (a percentage, "19" = 19%) for a line of ``tax_type`` sold to this customer.

    First match wins: the customer's own rate for the tax type; EU reverse charge (0%, noted on
    the invoice) for a business with a tax number in another EU country than the tenant's; the
    tenant's rule for the customer's country and tax type; the tenant's default.
    """
    # The default is checked even when unused, so a misconfigured tenant fails on every invoice
    # rather than only on the rare one that falls through to it.
    default = _rate(tenant_default, "tenant_default")
    own = customer_rates.get(tax_type)
    if own is not None:
        return TaxDecision(_rate(own, "customer rate"), False, TaxReason.CUSTOMER_RATE)
    customer_country = _country(customer_country)
    tenant_country = _country(tenant_country)
    if (
        customer_is_business
        and customer_tax_number
        and customer_tax_number.strip()
        and customer_country in EU_COUNTRIES
        and tenant_country in EU_COUNTRIES
        and customer_country != tenant_country
    ):
        return TaxDecision(_ZERO, True, TaxReason.REVERSE_CHARGE)
    if customer_country is not None:
        rule = tenant_country_rules.get((customer_country, tax_type))
        if rule is not None:
            return TaxDecision(
                _rate(rule, "tenant country rule"), False, TaxReason.TENANT_COUNTRY_RULE
            )
    return TaxDecision(default, False, TaxReason.TENANT_DEFAULT)


def tax_for_line(
    sub_total_minor: int, rate: Decimal, including_tax: bool, currency: str
) -> tuple[int, int, int]:
    """``(net, tax, gross)`` of one invoice line, with ``net + tax == gross`` exactly.

    Tax-exclusive prices add ``round(net * rate / 100)``. Tax-inclusive prices already contain the
    tax, so it is extracted: the net is rounded and the tax is what is left, which is why the parts
    always add up to the price the customer saw.
    """
    currency_exponent(currency)
    amount = _int(sub_total_minor, "sub_total_minor")
    numerator, denominator = _rate(rate, "rate").as_integer_ratio()
    if including_tax:
        net = _div_round_half_up(amount * 100 * denominator, 100 * denominator + numerator)
        return net, amount - net, amount
    tax = _div_round_half_up(amount * numerator, 100 * denominator)
    return amount, tax, amount + tax


# --- Invoice totals and vouchers ---------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """An invoice line's rounded money; its total is derived so it cannot disagree."""

    sub_total: int
    tax_total: int

    def __post_init__(self) -> None:
        _int(self.sub_total, "sub_total")
        _int(self.tax_total, "tax_total")

    @property
    def total(self) -> int:
        return self.sub_total + self.tax_total


def _as_line(raw: object, index: int) -> Line:
    if isinstance(raw, Line):
        return raw
    if not isinstance(raw, tuple):
        return Line(raw.sub_total, raw.tax_total)
    if len(raw) not in (2, 3):
        raise ValueError(f"lines[{index}] must be (sub_total, tax_total[, total])")
    line = Line(raw[0], raw[1])
    if len(raw) == 3 and _int(raw[2], "total") != line.total:
        raise ValueError(f"lines[{index}]: total must equal sub_total + tax_total")
    return line


def invoice_totals(lines: Iterable[object]) -> tuple[int, int, int]:
    """``(sub_total, tax_total, total)``: sums of already-rounded lines, so lines always add up.

    Lines are ``Line`` objects, ``(sub_total, tax_total[, total])`` tuples, or any object with
    ``sub_total`` and ``tax_total`` attributes (such as an InvoiceLine row).
    """
    sub_total = tax_total = 0
    for index, raw in enumerate(lines):
        line = _as_line(raw, index)
        sub_total += line.sub_total
        tax_total += line.tax_total
    return sub_total, tax_total, sub_total + tax_total


def discount_amount(
    sub_total_minor: int,
    *,
    percentage: Decimal | None,
    fixed_credit_minor: int | None,
    currency: str,
) -> int:
    """A voucher's discount (a positive int) on ``sub_total_minor``: never negative and never more
    than the sub-total, so a voucher can bring an invoice to zero but not below it."""
    currency_exponent(currency)
    sub_total = _int(sub_total_minor, "sub_total_minor")
    if (percentage is None) == (fixed_credit_minor is None):
        raise ValueError("a voucher has exactly one of percentage and fixed_credit_minor")
    if percentage is not None:
        pct = _non_negative(percentage, "percentage")
        if pct > _HUNDRED:
            raise ValueError("percentage must be at most 100")
        numerator, denominator = pct.as_integer_ratio()
        discount = _div_round_half_up(max(sub_total, 0) * numerator, 100 * denominator)
    else:
        discount = _int(fixed_credit_minor, "fixed_credit_minor")
        if discount < 0:
            raise ValueError("fixed_credit_minor must not be negative")
    return max(0, min(discount, sub_total))
