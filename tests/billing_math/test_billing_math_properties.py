"""Laws of billing_project.billing_math checked with hypothesis over generated inputs."""

import calendar
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing_project.billing_math import (
    Line,
    Step,
    Tier,
    add_interval,
    calc_rule_amount,
    currency_exponent,
    discount_amount,
    invoice_totals,
    period_bounds,
    period_containing,
    price_amount,
    price_amount_unrounded,
    prorate,
    prorated_change,
    round_minor,
    tax_for_line,
    to_minor,
)

# CI machines are small and shared: a slow example is not a failure.
lenient = settings(deadline=None)

currencies = st.sampled_from(["EUR", "JPY", "BHD", "CLF", "USD"])
amounts = st.integers(min_value=0, max_value=10**12)
signed_amounts = st.integers(min_value=-(10**12), max_value=10**12)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
quantities = st.decimals(min_value=0, max_value=10**6, places=4)
prices = st.decimals(min_value=0, max_value=10**4, places=4)
rates = st.decimals(min_value=0, max_value=50, places=2)
schedules = st.sampled_from(["week", "month", "year"])


@st.composite
def periods(draw):
    start = draw(moments)
    length = draw(st.integers(min_value=1, max_value=400 * 86_400 * 10**6))
    return start, start + timedelta(microseconds=length)


@st.composite
def tier_lists(draw, non_decreasing=False):
    """Contiguous tiers from unit 1, last open-ended; optionally with rising prices and fees."""
    widths = draw(st.lists(st.integers(min_value=1, max_value=50), max_size=4))
    tiers, first = [], 1
    price, fee = Decimal(0), 0
    for width in [*widths, None]:
        if non_decreasing:
            price += draw(prices)
            fee += draw(st.integers(min_value=0, max_value=1000))
        else:
            price, fee = draw(prices), draw(st.integers(min_value=0, max_value=1000))
        last = None if width is None else first + width - 1
        tiers.append(Tier(first, last, price, fee))
        first = None if last is None else last + 1
    return tiers


step_lists = st.lists(
    st.builds(Step, st.decimals(min_value=0, max_value=10**4, places=2), prices),
    min_size=1,
    max_size=5,
    unique_by=lambda step: step.threshold,
)


# --- Rounding ----------------------------------------------------------------------------------


@lenient
@given(st.decimals(min_value=-(10**15), max_value=10**15, places=6), currencies)
def test_round_minor_is_half_up_and_symmetric(amount, currency):
    reference = amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=Context(prec=50))
    assert round_minor(amount, currency) == int(reference)
    assert round_minor(-amount, currency) == -round_minor(amount, currency)


@lenient
@given(signed_amounts, currencies)
def test_to_minor_round_trips_exact_major_amounts(minor, currency):
    major = Decimal(minor).scaleb(-currency_exponent(currency), context=Context(prec=50))
    assert to_minor(major, currency) == minor


# --- Periods -----------------------------------------------------------------------------------


@lenient
@given(moments, schedules, st.integers(min_value=0, max_value=1200))
def test_periods_are_contiguous_and_anchored(anchor, schedule, n):
    start, end = period_bounds(anchor, schedule, n)
    next_start, _ = period_bounds(anchor, schedule, n + 1)
    assert start < end == next_start
    assert start.time() == anchor.time()
    if schedule == "week":
        assert end - start == timedelta(weeks=1)
        return
    last_day = calendar.monthrange(start.year, start.month)[1]
    assert start.day == anchor.day or (start.day == last_day and anchor.day > last_day)
    expected_month = (anchor.month - 1 + (n if schedule == "month" else 12 * n)) % 12 + 1
    assert start.month == expected_month


@lenient
@given(moments, st.integers(min_value=0, max_value=100))
def test_twelve_months_is_one_year(anchor, years):
    assert add_interval(anchor, "month", 12 * years) == add_interval(anchor, "year", years)


@lenient
@given(moments, schedules, st.integers(min_value=0, max_value=200 * 86_400 * 10**6 * 12))
def test_period_containing_finds_the_period(anchor, schedule, offset):
    at = anchor + timedelta(microseconds=offset)
    n, start, end = period_containing(anchor, schedule, at)
    assert start <= at < end
    assert (start, end) == period_bounds(anchor, schedule, n)
    assert period_containing(anchor, schedule, start)[0] == n


# --- Proration ---------------------------------------------------------------------------------


@lenient
@given(amounts, periods(), currencies, st.integers(min_value=0, max_value=10**12))
def test_prorating_a_whole_period_is_the_full_price(amount, period, currency, before):
    start, end = period
    assert prorate(amount, start, end, start, currency) == amount
    assert prorate(amount, start, end, start - timedelta(microseconds=before), currency) == amount
    assert prorate(amount, start, end, end, currency) == 0


@lenient
@given(amounts, periods(), currencies, st.lists(st.integers(0, 10**9), min_size=1, max_size=8))
def test_independently_rounded_parts_stay_within_half_a_unit_each(amount, period, currency, cuts):
    """k parts each rounded half-up err by (-1/2, 1/2], and their exact values sum to the whole;
    so the rounded sum is the whole plus an integer in (-k/2, k/2]: for 2 parts it is the whole
    or the whole + 1, and never more than (k - 1) away for any k >= 2."""
    start, end = period
    length = (end - start) // timedelta(microseconds=1)
    points = sorted({cut * length // 10**9 for cut in cuts} | {0, length})
    spans = [b - a for a, b in pairwise(points) if b > a]
    parts = [
        prorate(amount, start, end, end - timedelta(microseconds=span), currency) for span in spans
    ]
    k = len(parts)
    difference = sum(parts) - amount
    assert -k < 2 * difference <= k
    assert abs(difference) <= max(k - 1, 0)
    assert sum(parts) <= amount + max(k - 1, 0)


@lenient
@given(amounts, amounts, periods(), moments, currencies)
def test_credit_and_charge_of_a_change(old, new, period, at, currency):
    start, end = period
    credit, charge = prorated_change(old, new, start, end, at, currency)
    assert credit <= 0 <= charge
    same_credit, same_charge = prorated_change(old, old, start, end, at, currency)
    assert same_credit + same_charge == 0
    exact_difference = prorate(new - old, start, end, at, currency)
    assert abs(credit + charge - exact_difference) <= 1


# --- Price types and calc rules ----------------------------------------------------------------


@lenient
@given(
    st.sampled_from(["fixed_price", "per_unit", "package"]),
    quantities,
    quantities,
    prices,
    st.integers(min_value=1, max_value=1000),
)
def test_simple_prices_are_monotone(price_type, q1, q2, amount, units):
    low, high = sorted((q1, q2))
    kwargs = {"amount": amount, "units": units}
    assert price_amount_unrounded(price_type, low, **kwargs) <= price_amount_unrounded(
        price_type, high, **kwargs
    )
    assert price_amount(price_type, low, currency="EUR", **kwargs) <= price_amount(
        price_type, high, currency="EUR", **kwargs
    )


@lenient
@given(tier_lists(), quantities, quantities)
def test_graduated_is_monotone_and_sums_its_tiers(tiers, q1, q2):
    low, high = sorted((q1, q2))
    assert price_amount_unrounded("tiered_graduated", low, tiers=tiers) <= price_amount_unrounded(
        "tiered_graduated", high, tiers=tiers
    )
    expected = Decimal(0)
    for tier in tiers:
        top = high if tier.last_unit is None else min(high, Decimal(tier.last_unit))
        units_in_tier = top - (tier.first_unit - 1)
        if units_in_tier > 0:
            expected += units_in_tier * tier.unit_price + tier.flat_fee
    assert price_amount_unrounded("tiered_graduated", high, tiers=tiers) == expected


@lenient
@given(tier_lists(non_decreasing=True), quantities, quantities)
def test_volume_is_monotone_when_tiers_do_not_get_cheaper(tiers, q1, q2):
    # With cheaper upper tiers volume pricing has a cliff by design (see the golden cases).
    low, high = sorted((q1, q2))
    assert price_amount("tiered_volume", low, tiers=tiers, currency="EUR") <= price_amount(
        "tiered_volume", high, tiers=tiers, currency="EUR"
    )


@lenient
@given(tier_lists(), quantities)
def test_volume_prices_every_unit_at_exactly_one_tier(tiers, quantity):
    assume(quantity > 0)
    holding = [
        tier
        for tier in tiers
        if tier.first_unit - 1 < quantity and (tier.last_unit is None or quantity <= tier.last_unit)
    ]
    assert len(holding) == 1
    expected = quantity * holding[0].unit_price + holding[0].flat_fee
    assert price_amount_unrounded("tiered_volume", quantity, tiers=tiers) == expected


@lenient
@given(step_lists, quantities, quantities)
def test_stepped_is_monotone_and_sums_its_steps(steps, u1, u2):
    low, high = sorted((u1, u2))
    assert calc_rule_amount("stepped", low, steps=steps) <= calc_rule_amount(
        "stepped", high, steps=steps
    )
    ordered = sorted(steps, key=lambda step: step.threshold)
    per_step = []
    for step, following in zip(ordered, [*ordered[1:], None], strict=True):
        ceiling = high if following is None else min(high, following.threshold)
        units = max(Decimal(0), ceiling - step.threshold)
        per_step.append(calc_rule_amount("unit", units, step.money_value))
    assert calc_rule_amount("stepped", high, steps=steps) == sum(per_step)


@lenient
@given(step_lists, quantities)
def test_staged_uses_exactly_one_steps_price(steps, usage):
    amount = calc_rule_amount("staged", usage, steps=steps)
    reached = [step for step in steps if step.threshold <= usage]
    if not reached:
        assert amount == 0
        return
    highest = max(reached, key=lambda step: step.threshold)
    assert amount == usage * highest.money_value


@lenient
@given(quantities, quantities, prices, quantities)
def test_usage_rules_are_monotone(u1, u2, money_value, committed):
    low, high = sorted((u1, u2))
    for rule in ("unit", "post_invoice", "overcommit", "commit"):
        assert calc_rule_amount(rule, low, money_value, committed) <= calc_rule_amount(
            rule, high, money_value, committed
        )


# --- Tax, totals, vouchers ---------------------------------------------------------------------


@lenient
@given(signed_amounts, rates, currencies)
def test_tax_parts_add_up_exactly(amount, rate, currency):
    net, tax, gross = tax_for_line(amount, rate, True, currency)
    assert gross == amount and net + tax == gross
    assert abs(tax) <= abs(gross)
    net, tax, gross = tax_for_line(amount, rate, False, currency)
    assert net == amount and net + tax == gross
    assert tax == round_minor(Decimal(amount) * rate / 100, currency)


@lenient
@given(st.lists(st.tuples(signed_amounts, rates, st.booleans()), max_size=30), currencies)
def test_invoice_lines_always_add_up_to_the_totals(specs, currency):
    lines = []
    for amount, rate, including_tax in specs:
        net, tax, _ = tax_for_line(amount, rate, including_tax, currency)
        lines.append(Line(net, tax))
    sub_total, tax_total, total = invoice_totals(lines)
    assert sub_total == sum(line.sub_total for line in lines)
    assert tax_total == sum(line.tax_total for line in lines)
    assert total == sub_total + tax_total == sum(line.total for line in lines)


@lenient
@given(
    signed_amounts,
    st.one_of(
        st.tuples(st.decimals(min_value=0, max_value=100, places=3), st.none()),
        st.tuples(st.none(), amounts),
    ),
)
def test_discount_never_exceeds_the_sub_total_nor_goes_negative(sub_total, voucher):
    percentage, fixed = voucher
    discount = discount_amount(
        sub_total, percentage=percentage, fixed_credit_minor=fixed, currency="EUR"
    )
    assert 0 <= discount <= max(sub_total, 0)


# --- Floats ------------------------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@lenient
@given(finite_floats)
def test_float_money_and_quantities_raise_type_error(value):
    start, end = datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 5, 1, tzinfo=UTC)
    calls = [
        lambda: round_minor(value, "EUR"),
        lambda: to_minor(value, "EUR"),
        lambda: prorate(value, start, end, start, "EUR"),
        lambda: price_amount("per_unit", value, amount=1, currency="EUR"),
        lambda: price_amount("per_unit", Decimal(1), amount=value, currency="EUR"),
        lambda: calc_rule_amount("unit", value, Decimal(1)),
        lambda: calc_rule_amount("unit", Decimal(1), value),
        lambda: tax_for_line(100, value, True, "EUR"),
        lambda: discount_amount(100, percentage=value, fixed_credit_minor=None, currency="EUR"),
        lambda: invoice_totals([(value, 0)]),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
