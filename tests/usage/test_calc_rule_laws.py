"""The real laws of seed-002 rules, through a metered item's stored pricing (usage.selectors.
item_charge): monotone in usage where that holds, stepped = the sum of its steps, staged uses one
price. (Graduated ≥ volume is not a law, so it is not asserted.)"""

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from subscriptions.models import Price, SubscriptionItem
from usage.selectors import item_charge

usage = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False)
money = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**5), money), min_size=1, max_size=5
).map(lambda pairs: sorted({t: m for t, m in pairs}.items()))


def _item(rule, **pricing) -> SubscriptionItem:
    return SubscriptionItem(
        item_type="usage", calc_rule_type=rule, pricing=pricing, price=Price(type="per_unit")
    )


def _steps_json(pairs):
    return [{"threshold": str(t), "money_value": str(m)} for t, m in pairs]


@given(low=usage, high=usage, price=money, committed=usage)
def test_unit_and_overcommit_are_monotone_in_usage(low, high, price, committed):
    low, high = sorted((low, high))
    for item in (
        _item("unit", money_value=str(price)),
        _item("post_invoice", money_value=str(price)),
        _item("overcommit", money_value=str(price), default_value=str(committed)),
    ):
        assert item_charge(item, low, "EUR").amount <= item_charge(item, high, "EUR").amount


@given(low=usage, high=usage, pairs=steps)
def test_stepped_is_monotone_and_the_sum_of_its_steps(low, high, pairs):
    low, high = sorted((low, high))
    item = _item("stepped", steps=_steps_json(pairs))
    assert item_charge(item, low, "EUR").amount <= item_charge(item, high, "EUR").amount
    exact = Decimal(0)
    bounds = [Decimal(t) for t, _ in pairs] + [None]
    for (threshold, price), upper in zip(pairs, bounds[1:], strict=True):
        inside = max(Decimal(0), (high if upper is None else min(high, upper)) - threshold)
        exact += inside * price
    # Amounts are minor units already: the line is the exact sum rounded once, half up.
    assert item_charge(item, high, "EUR").amount == int(exact.quantize(Decimal(1), ROUND_HALF_UP))


@given(amount=usage, pairs=steps)
def test_staged_prices_all_usage_at_one_step(amount, pairs):
    item = _item("staged", steps=_steps_json(pairs))
    reached = [price for threshold, price in pairs if threshold <= amount]
    expected = amount * reached[-1] if reached else Decimal(0)
    charge = item_charge(item, amount, "EUR")
    assert charge.amount == int(expected.quantize(Decimal(1), ROUND_HALF_UP))
    if amount and reached:
        assert charge.unit_price == (expected / amount).quantize(Decimal("1E-10"))
