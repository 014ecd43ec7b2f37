"""Golden cases for billing_project.billing_math: every expected value is computed by hand."""

import ast
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

import billing_project.billing_math
from billing_project.billing_math import (
    EU_COUNTRIES,
    ISO_4217_EXPONENTS,
    CalcRule,
    Line,
    PriceType,
    Step,
    TaxReason,
    Tier,
    UnknownCurrencyError,
    active_fraction,
    add_interval,
    calc_rule_amount,
    calc_rule_charge,
    commit_in_advance,
    currency_exponent,
    discount_amount,
    format_money,
    invoice_totals,
    is_valid_currency,
    parse_steps,
    parse_tiers,
    period_bounds,
    period_containing,
    price_amount,
    price_amount_unrounded,
    prorate,
    prorated_change,
    proration_factor,
    resolve_tax_rate,
    round_minor,
    tax_for_line,
    to_minor,
    validate_steps,
    validate_tiers,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_module_imports_only_the_standard_library():
    """The math stays importable and testable without Django, a database or any package."""
    source = Path(billing_project.billing_math.__file__).read_text()
    modules = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {"__future__", "calendar", "collections.abc", "dataclasses", "datetime", "decimal"}
    stdlib |= {"enum", "itertools", "types"}
    assert modules <= stdlib


# --- Currencies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("VND", 0),
        ("ISK", 0),
        ("XOF", 0),
        ("EUR", 2),
        ("USD", 2),
        ("GBP", 2),
        ("CHF", 2),
        ("BHD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("TND", 3),
        ("LYD", 3),
        ("IQD", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_currency_exponent(code, exponent):
    assert currency_exponent(code) == exponent
    assert is_valid_currency(code)


@pytest.mark.parametrize("code", ["eur", "EURO", "", "XXX", "XAU", "HRK", None, 978])
def test_unknown_currency_is_both_value_and_key_error(code):
    assert not is_valid_currency(code)
    with pytest.raises(ValueError, match="unknown currency"):
        currency_exponent(code)
    with pytest.raises(KeyError):
        currency_exponent(code)
    with pytest.raises(UnknownCurrencyError):
        round_minor(D(1), code)


def test_currency_table_covers_iso_4217():
    assert len(ISO_4217_EXPONENTS) >= 150
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217_EXPONENTS)
    assert set(ISO_4217_EXPONENTS.values()) == {0, 2, 3, 4}


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (D("2.5"), "EUR", 3),
        (D("2.4999"), "EUR", 2),
        (D("-2.5"), "EUR", -3),
        (D("-2.4999"), "EUR", -2),
        (D("0.5"), "EUR", 1),
        (D("-0.5"), "EUR", -1),
        (D("0.49999999999999999999999999999999"), "EUR", 0),
        (D("1818"), "EUR", 1818),
        (D("1E+3"), "EUR", 1000),
        (D("2.5"), "JPY", 3),
        (D("2.4999"), "JPY", 2),
        (D("-2.5"), "JPY", -3),
        (D("2.5"), "BHD", 3),
        (D("2.4999"), "BHD", 2),
        (D("-2.5"), "BHD", -3),
        (7, "EUR", 7),
    ],
)
def test_round_minor_half_up(amount, currency, expected):
    assert round_minor(amount, currency) == expected


@pytest.mark.parametrize(
    ("major", "currency", "expected"),
    [
        (D("18.18"), "EUR", 1818),
        (D("18.185"), "EUR", 1819),
        (D("18.1849"), "EUR", 1818),
        (D("-18.185"), "EUR", -1819),
        (D("1818"), "JPY", 1818),
        (D("1818.5"), "JPY", 1819),
        (D("1.234"), "BHD", 1234),
        (D("1.2345"), "BHD", 1235),
        (D("0.00005"), "CLF", 1),
        (0, "EUR", 0),
    ],
)
def test_to_minor(major, currency, expected):
    assert to_minor(major, currency) == expected


@pytest.mark.parametrize(
    ("minor", "currency", "locale", "expected"),
    [
        (1818, "EUR", "en", "€18.18"),
        (1818, "EUR", "de", "18,18 €"),
        (1818, "EUR", "de-AT", "18,18 €"),
        (1818, "EUR", "fr", "18,18 €"),
        (181800, "EUR", "de", "1.818,00 €"),
        (123456789, "EUR", "fr_FR", "1 234 567,89 €"),
        (1818, "JPY", "en", "¥1,818"),
        (1818, "JPY", "de", "1.818 ¥"),
        (1234, "BHD", "en", "BHD 1.234"),
        (1234, "BHD", "de", "1,234 BHD"),
        (5, "USD", "en", "$0.05"),
        (-1818, "EUR", "en", "-€18.18"),
        (-1818, "EUR", "de", "-18,18 €"),
        (100000, "GBP", "en", "£1,000.00"),
        (1818, "CHF", "en", "CHF 18.18"),
        (1818, "EUR", "xx", "€18.18"),
        (0, "EUR", "en", "€0.00"),
    ],
)
def test_format_money(minor, currency, locale, expected):
    assert format_money(minor, currency, locale) == expected


# --- Periods -----------------------------------------------------------------------------------

JAN_31_2027_MONTHLY = [
    "2027-01-31",
    "2027-02-28",
    "2027-03-31",
    "2027-04-30",
    "2027-05-31",
    "2027-06-30",
    "2027-07-31",
    "2027-08-31",
    "2027-09-30",
    "2027-10-31",
    "2027-11-30",
    "2027-12-31",
    "2028-01-31",
]
FEB_29_2028_MONTHLY = [
    "2028-02-29",
    "2028-03-29",
    "2028-04-29",
    "2028-05-29",
    "2028-06-29",
    "2028-07-29",
    "2028-08-29",
    "2028-09-29",
    "2028-10-29",
    "2028-11-29",
    "2028-12-29",
    "2029-01-29",
    "2029-02-28",
]
JAN_31_2028_MONTHLY = ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]
FEB_29_2028_YEARLY = [
    "2028-02-29",
    "2029-02-28",
    "2030-02-28",
    "2031-02-28",
    "2032-02-29",
    "2033-02-28",
    "2036-02-29",
]
FEB_29_2028_YEARLY_N = [0, 1, 2, 3, 4, 5, 8]
JAN_31_2027_WEEKLY = ["2027-01-31", "2027-02-07", "2027-02-14", "2027-02-21", "2027-02-28"]


@pytest.mark.parametrize(
    ("anchor", "schedule", "ns", "expected"),
    [
        (utc(2027, 1, 31, 10, 30), "month", range(13), JAN_31_2027_MONTHLY),
        (utc(2028, 2, 29, 10, 30), "month", range(13), FEB_29_2028_MONTHLY),
        (utc(2028, 1, 31, 10, 30), "month", range(4), JAN_31_2028_MONTHLY),
        (utc(2028, 2, 29, 10, 30), "year", FEB_29_2028_YEARLY_N, FEB_29_2028_YEARLY),
        (utc(2027, 1, 31, 10, 30), "week", range(5), JAN_31_2027_WEEKLY),
    ],
    ids=["jan31-2027-month", "feb29-2028-month", "jan31-2028-month", "feb29-year", "week"],
)
def test_add_interval_golden_dates(anchor, schedule, ns, expected):
    got = [add_interval(anchor, schedule, n) for n in ns]
    assert [d.date().isoformat() for d in got] == expected
    assert all(d.time() == anchor.time() and d.tzinfo is anchor.tzinfo for d in got)


@pytest.mark.parametrize(
    ("anchor", "schedule", "n", "expected"),
    [
        (utc(2027, 1, 31), "month", 1, utc(2027, 2, 28)),
        (utc(2027, 1, 31), "month", 2, utc(2027, 3, 31)),
        (utc(2027, 1, 31), "month", 3, utc(2027, 4, 30)),
        (utc(2028, 1, 31), "month", 1, utc(2028, 2, 29)),
        (utc(2027, 12, 15), "month", 1, utc(2028, 1, 15)),
        (utc(2027, 3, 31), "month", -1, utc(2027, 2, 28)),
        (utc(2028, 2, 29), "year", 1, utc(2029, 2, 28)),
        (utc(2028, 2, 29), "year", 4, utc(2032, 2, 29)),
        (utc(2026, 11, 22, 10), "year", 1, utc(2027, 11, 22, 10)),
        (utc(2027, 12, 28), "week", 1, utc(2028, 1, 4)),
        (utc(2027, 1, 31), "week", 52, utc(2028, 1, 30)),
        (utc(2027, 1, 31), "month", 0, utc(2027, 1, 31)),
    ],
)
def test_add_interval(anchor, schedule, n, expected):
    assert add_interval(anchor, schedule, n) == expected


def test_add_interval_accepts_any_utc_tzinfo():
    anchor = datetime(2027, 1, 31, tzinfo=ZoneInfo("UTC"))
    assert add_interval(anchor, "month", 1) == utc(2027, 2, 28)
    assert add_interval(datetime(2027, 1, 31, tzinfo=timezone(timedelta(0))), "month", 1) == utc(
        2027, 2, 28
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((datetime(2027, 1, 31), "month", 1), ValueError),  # naive
        ((datetime(2027, 1, 31, tzinfo=ZoneInfo("Europe/Berlin")), "month", 1), ValueError),
        ((utc(2027, 1, 31), "day", 1), ValueError),
        ((utc(2027, 1, 31), "one-off", 1), ValueError),
        ((utc(2027, 1, 31), "month", 1.0), TypeError),
        ((utc(2027, 1, 31).date(), "month", 1), TypeError),
    ],
)
def test_add_interval_rejects(args, error):
    with pytest.raises(error):
        add_interval(*args)


def test_period_bounds():
    anchor = utc(2027, 1, 31, 8)
    assert period_bounds(anchor, "month", 0) == (anchor, utc(2027, 2, 28, 8))
    assert period_bounds(anchor, "month", 1) == (utc(2027, 2, 28, 8), utc(2027, 3, 31, 8))
    assert period_bounds(anchor, "year", 1) == (utc(2028, 1, 31, 8), utc(2029, 1, 31, 8))
    with pytest.raises(ValueError, match="negative"):
        period_bounds(anchor, "month", -1)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2027, 1, 31, 8), (0, utc(2027, 1, 31, 8), utc(2027, 2, 28, 8))),
        (utc(2027, 2, 28, 7, 59, 59), (0, utc(2027, 1, 31, 8), utc(2027, 2, 28, 8))),
        (utc(2027, 2, 28, 8), (1, utc(2027, 2, 28, 8), utc(2027, 3, 31, 8))),
        (utc(2027, 3, 31, 7), (1, utc(2027, 2, 28, 8), utc(2027, 3, 31, 8))),
        (utc(2027, 3, 31, 9), (2, utc(2027, 3, 31, 8), utc(2027, 4, 30, 8))),
        (utc(2028, 1, 31, 8), (12, utc(2028, 1, 31, 8), utc(2028, 2, 29, 8))),
    ],
)
def test_period_containing_month(at, expected):
    assert period_containing(utc(2027, 1, 31, 8), "month", at) == expected


def test_period_containing_week_and_year():
    anchor = utc(2027, 1, 31, 8)
    assert period_containing(anchor, "week", utc(2027, 2, 14, 8)) == (
        2,
        utc(2027, 2, 14, 8),
        utc(2027, 2, 21, 8),
    )
    assert period_containing(anchor, "year", utc(2028, 1, 31, 7)) == (
        0,
        anchor,
        utc(2028, 1, 31, 8),
    )
    with pytest.raises(ValueError, match="before the anchor"):
        period_containing(anchor, "month", utc(2027, 1, 31, 7))


# --- Proration ---------------------------------------------------------------------------------

APRIL_START, APRIL_END = utc(2027, 4, 1), utc(2027, 5, 1)  # 30 days


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2027, 3, 1), D(1)),
        (APRIL_START, D(1)),
        (utc(2027, 4, 16), D("0.5")),
        (APRIL_END, D(0)),
        (utc(2027, 6, 1), D(0)),
        (utc(2027, 4, 25), D("0.2")),
    ],
)
def test_proration_factor(at, expected):
    assert proration_factor(APRIL_START, APRIL_END, at) == expected


@pytest.mark.parametrize(
    ("amount", "at", "currency", "expected"),
    [
        (3000, utc(2027, 4, 11), "EUR", 2000),  # 20 of 30 days left
        (3000, APRIL_START, "EUR", 3000),
        (3000, APRIL_END, "EUR", 0),
        (1000, utc(2027, 4, 8), "JPY", 767),  # 1000 * 23/30 = 766.67
        (1000, utc(2027, 4, 11), "EUR", 667),  # 666.67
        (1000, utc(2027, 4, 21), "EUR", 333),  # 333.33
        (45, utc(2027, 4, 21), "EUR", 15),
        (1, utc(2027, 4, 16), "EUR", 1),  # exactly 0.5 rounds up
        (-1, utc(2027, 4, 16), "EUR", -1),
        (1000, utc(2027, 4, 1, 0, 0, 1), "BHD", 1000),  # 999.9996
        (12345, utc(2027, 4, 16, 12), "BHD", 5967),  # 12345 * 14.5/30 = 5966.75
    ],
)
def test_prorate(amount, at, currency, expected):
    assert prorate(amount, APRIL_START, APRIL_END, at, currency) == expected


@pytest.mark.parametrize(
    ("amount", "cuts", "parts"),
    [
        (1000, [utc(2027, 4, 11), utc(2027, 4, 21)], [333, 333, 333]),  # whole - 1
        (1, [utc(2027, 4, 16)], [1, 1]),  # two halves of a cent: whole + 1
        (3000, [utc(2027, 4, 11)], [1000, 2000]),
    ],
)
def test_independently_rounded_parts(amount, cuts, parts):
    """Each part rounds on its own, so k parts may miss the whole by up to k/2 (see properties)."""
    bounds = [APRIL_START, *cuts, APRIL_END]
    got = [
        prorate(amount, APRIL_START, APRIL_END, APRIL_END - (b - a), "EUR")
        for a, b in pairwise(bounds)
    ]
    assert got == parts


def test_prorate_counts_microseconds_not_float_seconds():
    start = utc(2027, 4, 1)
    end = start + timedelta(microseconds=3)
    assert prorate(3, start, end, start + timedelta(microseconds=1), "EUR") == 2


def test_prorate_rejects_empty_period():
    with pytest.raises(ValueError, match="after period_start"):
        prorate(100, APRIL_END, APRIL_START, APRIL_START, "EUR")


@pytest.mark.parametrize(
    ("old", "new", "at", "expected"),
    [
        (3000, 6000, utc(2027, 4, 11), (-2000, 4000)),  # upgrade after 10 days
        (6000, 3000, utc(2027, 4, 11), (-4000, 2000)),  # downgrade
        (1818, 1818, utc(2027, 4, 11), (-1212, 1212)),  # same price nets to zero
        (1000, 2000, utc(2027, 4, 21), (-333, 667)),  # each part rounded on its own
        (3000, 0, utc(2027, 4, 11), (-2000, 0)),
        (3000, 6000, APRIL_END, (0, 0)),
    ],
)
def test_prorated_change(old, new, at, expected):
    assert prorated_change(old, new, APRIL_START, APRIL_END, at, "EUR") == expected


def test_prorated_change_rejects_negative_amounts():
    with pytest.raises(ValueError, match="old_amount"):
        prorated_change(-1, 100, APRIL_START, APRIL_END, APRIL_START, "EUR")


@pytest.mark.parametrize(
    ("active_from", "active_to", "expected"),
    [
        (None, None, D(1)),
        (utc(2027, 1, 1), None, D(1)),
        (utc(2027, 4, 16), None, D("0.5")),
        (None, utc(2027, 4, 16), D("0.5")),
        (utc(2027, 4, 7), utc(2027, 4, 13), D("0.2")),
        (utc(2027, 5, 1), None, D(0)),
        (None, utc(2027, 4, 1), D(0)),
        (utc(2027, 4, 20), utc(2027, 4, 10), D(0)),
    ],
)
def test_active_fraction(active_from, active_to, expected):
    assert active_fraction(active_from, active_to, APRIL_START, APRIL_END) == expected


# --- Price types -------------------------------------------------------------------------------

TIERS = [
    Tier(1, 10, D(100)),
    Tier(11, 20, D(80), flat_fee=500),
    Tier(21, None, D("0.0125"), flat_fee=1000),
]


@pytest.mark.parametrize(
    ("price_type", "quantity", "kwargs", "expected"),
    [
        ("fixed_price", D(0), {"amount": 1818}, 1818),
        ("fixed_price", D(5), {"amount": 1818}, 1818),
        ("per_unit", D(3), {"amount": 1818}, 5454),
        ("per_unit", D(0), {"amount": 1818}, 0),
        ("per_unit", D(1000), {"amount": D("0.0125")}, 13),  # 12.5
        ("per_unit", D(999), {"amount": D("0.0125")}, 12),  # 12.4875
        ("per_unit", D("2.5"), {"amount": 3}, 8),  # 7.5
        ("package", D(0), {"amount": 500, "units": 10}, 0),
        ("package", D(1), {"amount": 500, "units": 10}, 500),
        ("package", D(10), {"amount": 500, "units": 10}, 500),
        ("package", D(11), {"amount": 500, "units": 10}, 1000),
        ("package", D("10.5"), {"amount": 500, "units": 10}, 1000),
        ("package", D(20), {"amount": 500, "units": 10}, 1000),
        ("package", D(7), {"amount": D("0.25"), "units": 3}, 1),  # 3 packages: 0.75
        ("tiered_volume", D(0), {"tiers": TIERS}, 0),
        ("tiered_volume", D("0.5"), {"tiers": TIERS}, 50),
        ("tiered_volume", D(5), {"tiers": TIERS}, 500),
        ("tiered_volume", D(10), {"tiers": TIERS}, 1000),
        ("tiered_volume", D("10.5"), {"tiers": TIERS}, 1340),  # 10.5*80 + 500
        ("tiered_volume", D(11), {"tiers": TIERS}, 1380),
        ("tiered_volume", D(20), {"tiers": TIERS}, 2100),
        ("tiered_volume", D(21), {"tiers": TIERS}, 1000),  # 0.2625 + 1000: the volume cliff
        ("tiered_volume", D(100), {"tiers": TIERS}, 1001),  # 1.25 + 1000
        ("tiered_graduated", D(0), {"tiers": TIERS}, 0),
        ("tiered_graduated", D("0.5"), {"tiers": TIERS}, 50),
        ("tiered_graduated", D(5), {"tiers": TIERS}, 500),
        ("tiered_graduated", D(10), {"tiers": TIERS}, 1000),
        ("tiered_graduated", D("10.5"), {"tiers": TIERS}, 1540),  # 1000 + 40 + 500
        ("tiered_graduated", D(11), {"tiers": TIERS}, 1580),
        ("tiered_graduated", D(20), {"tiers": TIERS}, 2300),
        ("tiered_graduated", D(21), {"tiers": TIERS}, 3300),  # 2300 + 0.0125 + 1000
        ("tiered_graduated", D(100), {"tiers": TIERS}, 3301),  # 2300 + 80*0.0125 + 1000
        ("tiered_graduated", D(140), {"tiers": TIERS}, 3302),  # 2300 + 1.5 + 1000 rounds up
    ],
)
def test_price_amount(price_type, quantity, kwargs, expected):
    assert price_amount(price_type, quantity, currency="EUR", **kwargs) == expected


@pytest.mark.parametrize(
    ("price_type", "quantity", "expected"),
    [
        (PriceType.TIERED_VOLUME, D(21), D("1000.2625")),
        (PriceType.TIERED_GRADUATED, D(21), D("3300.0125")),
        (PriceType.TIERED_GRADUATED, D("20.2"), D("2300.0025") + 1000),
    ],
)
def test_price_amount_unrounded_is_exact(price_type, quantity, expected):
    assert price_amount_unrounded(price_type, quantity, tiers=TIERS) == expected


def test_price_amount_rounds_per_currency():
    assert price_amount("per_unit", D(3), amount=D("0.5"), currency="JPY") == 2  # 1.5
    assert price_amount("per_unit", D(3), amount=D("0.5"), currency="BHD") == 2


def test_tiers_as_plain_tuples():
    tuples = [(1, 10, D(100), 0), (11, None, D(80))]
    assert price_amount("tiered_graduated", D(12), tiers=tuples, currency="EUR") == 1160


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([], "must not be empty"),
        ([Tier(0, None, D(1))], r"tiers\[0\].first_unit must be 1"),
        ([Tier(2, None, D(1))], "start at unit 1"),
        ([Tier(1, 5, D(1)), Tier(7, None, D(1))], "contiguous"),
        ([Tier(1, 5, D(1)), Tier(5, None, D(1))], "contiguous"),
        ([Tier(1, None, D(1)), Tier(2, None, D(1))], "only be open-ended on the last"),
        ([Tier(1, 5, D(1))], "last tier is open-ended"),
        ([Tier(1, 0, D(1)), Tier(1, None, D(1))], "below its first_unit"),
        ([Tier(1, None, D(-1))], "unit_price must not be negative"),
        ([Tier(1, None, D(1), flat_fee=-5)], "flat_fee must not be negative"),
    ],
)
def test_validate_tiers_rejects(tiers, message):
    with pytest.raises(ValueError, match=message):
        validate_tiers(tiers)


@pytest.mark.parametrize(
    "tiers",
    [
        [Tier(1, None, 0.5)],
        [Tier(1.0, None, D(1))],
        [Tier(1, None, D(1), flat_fee=1.5)],
        ["1-10"],
    ],
)
def test_validate_tiers_type_errors(tiers):
    with pytest.raises(TypeError):
        validate_tiers(tiers)


def test_parse_tiers_from_api_json():
    raw = [
        {"first_unit": 1, "last_unit": 5, "unit_price": "0.0125", "flat_fee": 0},
        {"first_unit": 6, "last_unit": None, "unit_price": "0.01"},
    ]
    assert parse_tiers(raw) == (Tier(1, 5, D("0.0125"), 0), Tier(6, None, D("0.01"), 0))
    with pytest.raises(ValueError, match=r"tiers\[0\].unit_price is required"):
        parse_tiers([{"first_unit": 1, "last_unit": None}])
    with pytest.raises(ValueError, match="decimal string"):
        parse_tiers([{"first_unit": 1, "last_unit": None, "unit_price": "abc"}])

    with pytest.raises(
        ValueError, match=r"tiers\[0\].unit_price must be a decimal string, not float"
    ):
        parse_tiers([{"first_unit": 1, "last_unit": None, "unit_price": 0.01}])
    with pytest.raises(ValueError, match=r"tiers\[0\].first_unit must be an integer"):
        parse_tiers([{"first_unit": "1", "unit_price": "1"}])
    with pytest.raises(ValueError, match=r"tiers\[0\] must be an object"):
        parse_tiers([[1, None, "1"]])
    assert parse_tiers([{"first_unit": 1, "unit_price": 2}]) == (Tier(1, None, D(2), 0),)


@pytest.mark.parametrize(
    ("price_type", "kwargs", "message"),
    [
        ("fixed_price", {}, "needs an amount"),
        ("per_unit", {}, "needs an amount"),
        ("package", {"amount": 100}, "needs units"),
        ("package", {"amount": 100, "units": 0}, "needs units"),
        ("tiered_volume", {}, "needs tiers"),
        ("tiered_graduated", {}, "needs tiers"),
        ("flat", {"amount": 100}, "price type must be one of fixed_price, per_unit"),
        ("per_unit", {"amount": -1}, "amount must not be negative"),
    ],
)
def test_price_amount_rejects(price_type, kwargs, message):
    with pytest.raises(ValueError, match=message):
        price_amount(price_type, D(1), currency="EUR", **kwargs)


def test_price_amount_rejects_negative_and_float_quantity():
    with pytest.raises(ValueError, match="quantity must not be negative"):
        price_amount("per_unit", D(-1), amount=1, currency="EUR")
    with pytest.raises(TypeError):
        price_amount("per_unit", 1.5, amount=1, currency="EUR")
    with pytest.raises(TypeError):
        price_amount("per_unit", D(1), amount=1.5, currency="EUR")


# --- Seed-002 calc rules -----------------------------------------------------------------------

STEPS = [Step(D(0), D(10)), Step(D(100), D(5)), Step(D(1000), D(1))]


@pytest.mark.parametrize(
    ("rule", "usage", "kwargs", "expected"),
    [
        ("unit", D("1234.5"), {"money_value": D("0.5")}, D("617.25")),
        ("unit", D(0), {"money_value": D(7)}, D(0)),
        ("post_invoice", D("1234.5"), {"money_value": D("0.5")}, D("617.25")),
        ("stepped", D(0), {"steps": STEPS}, D(0)),
        ("stepped", D(50), {"steps": STEPS}, D(500)),
        ("stepped", D(100), {"steps": STEPS}, D(1000)),
        ("stepped", D(150), {"steps": STEPS}, D(1250)),
        ("stepped", D(1000), {"steps": STEPS}, D(5500)),
        ("stepped", D(1500), {"steps": STEPS}, D(6000)),
        ("stepped", D("100.5"), {"steps": STEPS}, D("1002.5")),
        ("stepped", D(150), {"steps": list(reversed(STEPS))}, D(1250)),
        ("stepped", D(5), {"steps": [Step(D(10), D(2))]}, D(0)),  # free below the first step
        ("stepped", D(15), {"steps": [Step(D(10), D(2))]}, D(10)),
        ("staged", D(0), {"steps": STEPS}, D(0)),
        ("staged", D(50), {"steps": STEPS}, D(500)),
        ("staged", D(99), {"steps": STEPS}, D(990)),
        ("staged", D(100), {"steps": STEPS}, D(500)),
        ("staged", D(999), {"steps": STEPS}, D(4995)),
        ("staged", D(1000), {"steps": STEPS}, D(1000)),
        ("staged", D("1500.5"), {"steps": STEPS}, D("1500.5")),
        ("staged", D(5), {"steps": [Step(D(10), D(2))]}, D(0)),
        ("staged", D(10), {"steps": [Step(D(10), D(2))]}, D(20)),
        ("commit", D(5000), {"money_value": D(3), "default_value": D(100)}, D(0)),
        ("overcommit", D(50), {"money_value": D(3), "default_value": D(100)}, D(0)),
        ("overcommit", D(100), {"money_value": D(3), "default_value": D(100)}, D(0)),
        ("overcommit", D(150), {"money_value": D(3), "default_value": D(100)}, D(150)),
        (
            "overcommit",
            D("100.25"),
            {"money_value": D("0.0125"), "default_value": D(100)},
            D("0.003125"),
        ),
    ],
)
def test_calc_rule_amount(rule, usage, kwargs, expected):
    assert calc_rule_amount(rule, usage, **kwargs) == expected


@pytest.mark.parametrize(
    ("rule", "usage", "kwargs", "currency", "expected"),
    [
        ("unit", D(3), {"money_value": D("0.5")}, "EUR", 2),
        ("unit", D("1234.5"), {"money_value": D("0.5")}, "JPY", 617),
        ("stepped", D("100.5"), {"steps": STEPS}, "EUR", 1003),
        ("overcommit", D(101), {"money_value": D("0.5"), "default_value": D(100)}, "EUR", 1),
    ],
)
def test_calc_rule_charge(rule, usage, kwargs, currency, expected):
    assert calc_rule_charge(rule, usage, currency=currency, **kwargs) == expected


@pytest.mark.parametrize(
    ("default_value", "money_value", "share", "expected"),
    [
        (D(100), D("2.5"), D(1), 250),
        (D(100), D("2.5"), D("0.5"), 125),
        (D(100), D("2.5"), D(1) / D(3), 83),  # 83.33
        (D(3), D("0.5"), D(1), 2),  # 1.5 rounds up
        (D(0), D(10), D(1), 0),
    ],
)
def test_commit_in_advance(default_value, money_value, share, expected):
    assert commit_in_advance(default_value, money_value, currency="EUR", share=share) == expected


@pytest.mark.parametrize(
    ("rule", "kwargs", "error", "message"),
    [
        ("unit", {}, ValueError, "needs money_value"),
        ("post_invoice", {}, ValueError, "needs money_value"),
        ("overcommit", {"money_value": D(1)}, ValueError, "needs default_value"),
        ("stepped", {}, ValueError, "needs steps"),
        ("staged", {"steps": []}, ValueError, "must not be empty"),
        ("stepped", {"steps": [Step(D(1), D(1)), Step(D(1), D(2))]}, ValueError, "distinct"),
        ("stepped", {"steps": [Step(D(-1), D(1))]}, ValueError, "threshold must not be negative"),
        ("flat", {"money_value": D(1)}, ValueError, "calc_rule_type must be one of unit"),
        ("unit", {"money_value": 0.5}, TypeError, "Decimal"),
    ],
)
def test_calc_rule_rejects(rule, kwargs, error, message):
    with pytest.raises(error, match=message):
        calc_rule_amount(rule, D(1), **kwargs)


def test_calc_rule_rejects_negative_and_float_usage():
    with pytest.raises(ValueError, match="usage must not be negative"):
        calc_rule_amount("unit", D(-1), D(1))
    with pytest.raises(TypeError):
        calc_rule_amount("unit", 1.0, D(1))


def test_steps_from_seed_002_json():
    raw = [{"threshold": "100", "money_value": "5"}, {"threshold": "0", "money_value": "10"}]
    assert parse_steps(raw) == (Step(D(0), D(10)), Step(D(100), D(5)))
    assert validate_steps([(D(5), D(1)), (0, 2)]) == (Step(D(0), D(2)), Step(D(5), D(1)))
    with pytest.raises(ValueError, match=r"steps\[0\].money_value is required"):
        parse_steps([{"threshold": "1"}])
    with pytest.raises(ValueError, match=r"steps\[0\].threshold must be a decimal string"):
        parse_steps([{"threshold": 1.5, "money_value": "1"}])


def test_calc_rule_enum_values_match_seed_002():
    assert {r.value for r in CalcRule} == {
        "commit",
        "overcommit",
        "stepped",
        "staged",
        "unit",
        "post_invoice",
    }


# --- Tax ---------------------------------------------------------------------------------------

TENANT_RULES = {("FR", "digital"): D(20), ("US", "standard"): D("7.25"), ("DE", "standard"): D(19)}


def decide(**overrides):
    arguments = {
        "customer_rates": {},
        "tenant_country_rules": TENANT_RULES,
        "tenant_default": D(19),
        "customer_country": "DE",
        "tenant_country": "DE",
        "tax_type": "standard",
        "customer_is_business": False,
        "customer_tax_number": None,
    }
    return resolve_tax_rate(**{**arguments, **overrides})


@pytest.mark.parametrize(
    ("overrides", "rate", "reverse_charge", "reason"),
    [
        ({"customer_rates": {"standard": D(7)}}, D(7), False, TaxReason.CUSTOMER_RATE),
        (
            {
                "customer_rates": {"standard": D(7)},
                "customer_country": "FR",
                "customer_is_business": True,
                "customer_tax_number": "FR123",
            },
            D(7),
            False,
            TaxReason.CUSTOMER_RATE,
        ),
        (
            {"customer_rates": {"standard": None, "digital": D(5)}, "customer_country": "US"},
            D("7.25"),
            False,
            TaxReason.TENANT_COUNTRY_RULE,
        ),
        (
            {"customer_country": "FR", "customer_is_business": True, "customer_tax_number": "FR1"},
            D(0),
            True,
            TaxReason.REVERSE_CHARGE,
        ),
        (
            {"customer_country": "el", "customer_is_business": True, "customer_tax_number": "EL1"},
            D(0),
            True,
            TaxReason.REVERSE_CHARGE,
        ),
        (
            {"customer_is_business": True, "customer_tax_number": "DE1"},
            D(19),
            False,
            TaxReason.TENANT_COUNTRY_RULE,
        ),
        (
            {"customer_country": "FR", "customer_is_business": False, "customer_tax_number": "1"},
            D(19),
            False,
            TaxReason.TENANT_DEFAULT,
        ),
        (
            {"customer_country": "FR", "customer_is_business": True, "customer_tax_number": " "},
            D(19),
            False,
            TaxReason.TENANT_DEFAULT,
        ),
        (
            {
                "customer_country": "FR",
                "tax_type": "digital",
                "customer_is_business": True,
                "customer_tax_number": None,
            },
            D(20),
            False,
            TaxReason.TENANT_COUNTRY_RULE,
        ),
        (
            {"customer_country": "US", "customer_is_business": True, "customer_tax_number": "X"},
            D("7.25"),
            False,
            TaxReason.TENANT_COUNTRY_RULE,
        ),
        (
            {
                "tenant_country": "GB",
                "customer_country": "FR",
                "customer_is_business": True,
                "customer_tax_number": "FR1",
            },
            D(19),
            False,
            TaxReason.TENANT_DEFAULT,
        ),
        (
            {"customer_country": "fr", "tax_type": "digital"},
            D(20),
            False,
            TaxReason.TENANT_COUNTRY_RULE,
        ),
        ({"customer_country": "JP"}, D(19), False, TaxReason.TENANT_DEFAULT),
        ({"customer_country": None}, D(19), False, TaxReason.TENANT_DEFAULT),
        (
            {"customer_country": "DE", "tax_type": "physical"},
            D(19),
            False,
            TaxReason.TENANT_DEFAULT,
        ),
    ],
)
def test_resolve_tax_rate(overrides, rate, reverse_charge, reason):
    decision = decide(**overrides)
    assert (decision.rate, decision.reverse_charge, decision.reason) == (
        rate,
        reverse_charge,
        reason,
    )


def test_resolve_tax_rate_rejects_float_and_negative_rates():
    with pytest.raises(TypeError):
        decide(customer_rates={"standard": 19.0})
    with pytest.raises(ValueError, match="must not be negative"):
        decide(tenant_default=D(-1))


def test_eu_countries():
    assert len(EU_COUNTRIES) == 27
    assert {"DE", "FR", "GR", "HR", "IE"} <= EU_COUNTRIES
    assert not {"GB", "CH", "NO", "EL"} & EU_COUNTRIES


@pytest.mark.parametrize(
    ("amount", "rate", "including_tax", "currency", "expected"),
    [
        (11900, D(19), True, "EUR", (10000, 1900, 11900)),
        (10000, D(19), False, "EUR", (10000, 1900, 11900)),
        (1818, D(19), False, "EUR", (1818, 345, 2163)),  # 345.42
        (1818, D(19), True, "EUR", (1528, 290, 1818)),  # 1527.73
        (100, D(7), True, "EUR", (93, 7, 100)),  # 93.46
        (999, D("5.5"), False, "EUR", (999, 55, 1054)),  # 54.945
        (1000, D("5.5"), True, "EUR", (948, 52, 1000)),  # 947.87
        (50, D(10), False, "EUR", (50, 5, 55)),
        (5, D(10), False, "EUR", (5, 1, 6)),  # 0.5 rounds up
        (1818, D(0), True, "EUR", (1818, 0, 1818)),
        (1818, D(0), False, "EUR", (1818, 0, 1818)),
        (1100, D(10), True, "JPY", (1000, 100, 1100)),
        (1234, D(15), False, "BHD", (1234, 185, 1419)),  # 185.1
        (-1000, D(19), False, "EUR", (-1000, -190, -1190)),
        (-11900, D(19), True, "EUR", (-10000, -1900, -11900)),
        (0, D(19), True, "EUR", (0, 0, 0)),
    ],
)
def test_tax_for_line(amount, rate, including_tax, currency, expected):
    assert tax_for_line(amount, rate, including_tax, currency) == expected


# --- Invoice totals and vouchers ---------------------------------------------------------------


def test_invoice_totals_accepts_lines_tuples_and_rows():
    lines = [
        Line(10000, 1900),
        (2000, 380),
        (-500, -95, -595),
        SimpleNamespace(sub_total=1818, tax_total=345, description="row"),
    ]
    assert invoice_totals(lines) == (13318, 2530, 15848)
    assert invoice_totals([]) == (0, 0, 0)
    assert Line(100, 19).total == 119


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([(100, 19, 120)], ValueError),
        ([(100,)], ValueError),
        ([(100.0, 19)], TypeError),
        ([Line(100, 19), (1, True)], TypeError),
    ],
)
def test_invoice_totals_rejects(lines, error):
    with pytest.raises(error):
        invoice_totals(lines)


@pytest.mark.parametrize(
    ("sub_total", "kwargs", "expected"),
    [
        (1818, {"percentage": D(10)}, 182),  # 181.8
        (1818, {"percentage": D(100)}, 1818),
        (999, {"percentage": D("12.5")}, 125),  # 124.875
        (1818, {"percentage": D(0)}, 0),
        (1818, {"fixed_credit_minor": 500}, 500),
        (1818, {"fixed_credit_minor": 5000}, 1818),  # capped at the sub-total
        (0, {"fixed_credit_minor": 500}, 0),
        (-100, {"percentage": D(50)}, 0),
        (-100, {"fixed_credit_minor": 500}, 0),
    ],
)
def test_discount_amount(sub_total, kwargs, expected):
    arguments = {"percentage": None, "fixed_credit_minor": None, **kwargs}
    assert discount_amount(sub_total, currency="EUR", **arguments) == expected


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"percentage": D(10), "fixed_credit_minor": 100}, ValueError),
        ({"percentage": None, "fixed_credit_minor": None}, ValueError),
        ({"percentage": D(101), "fixed_credit_minor": None}, ValueError),
        ({"percentage": D(-1), "fixed_credit_minor": None}, ValueError),
        ({"percentage": None, "fixed_credit_minor": -1}, ValueError),
        ({"percentage": 10.0, "fixed_credit_minor": None}, TypeError),
        ({"percentage": None, "fixed_credit_minor": 10.0}, TypeError),
    ],
)
@pytest.mark.parametrize("sub_total", [1000, 0, -1000])
def test_discount_amount_rejects(kwargs, error, sub_total):
    with pytest.raises(error):
        discount_amount(sub_total, currency="EUR", **kwargs)


# --- Floats are refused everywhere -------------------------------------------------------------

FLOAT_CALLS = {
    "round_minor": lambda: round_minor(2.5, "EUR"),
    "to_minor": lambda: to_minor(18.18, "EUR"),
    "format_money": lambda: format_money(18.18, "EUR"),
    "prorate": lambda: prorate(30.0, APRIL_START, APRIL_END, APRIL_START, "EUR"),
    "prorated_change": lambda: prorated_change(1, 2.0, APRIL_START, APRIL_END, APRIL_START, "EUR"),
    "price_amount_quantity": lambda: price_amount("per_unit", 2.0, amount=1, currency="EUR"),
    "price_amount_tier": lambda: price_amount(
        "tiered_volume", D(1), tiers=[(1, None, 0.5, 0)], currency="EUR"
    ),
    "calc_rule_usage": lambda: calc_rule_amount("unit", 2.0, D(1)),
    "calc_rule_steps": lambda: calc_rule_amount("staged", D(1), steps=[(0.0, D(1))]),
    "commit_in_advance": lambda: commit_in_advance(D(1), 0.5, currency="EUR"),
    "tax_for_line_rate": lambda: tax_for_line(100, 19.0, False, "EUR"),
    "tax_for_line_amount": lambda: tax_for_line(100.0, D(19), False, "EUR"),
    "discount_amount": lambda: discount_amount(
        100.0, percentage=D(1), fixed_credit_minor=None, currency="EUR"
    ),
    "line": lambda: Line(1.0, 0),
}


@pytest.mark.parametrize("call", FLOAT_CALLS.values(), ids=FLOAT_CALLS.keys())
def test_float_inputs_raise_type_error(call):
    with pytest.raises(TypeError):
        call()
