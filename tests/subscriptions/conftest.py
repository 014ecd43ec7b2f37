import datetime as dt

import pytest
import time_machine

from tests.factories import CustomerFactory
from tests.subscriptions.factories import make_plan, make_usage_price

UTC = dt.UTC
# 2026-01-01 00:00 UTC: January has 31 days, so the first monthly period is 31 days long.
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
# Half-way: 15 days gone, 16 of 31 left.
MID = dt.datetime(2026, 1, 16, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def card_customer(tenant):
    return CustomerFactory(tenant=tenant, email="card@example.com")


@pytest.fixture
def invoice_customer(tenant):
    return CustomerFactory(tenant=tenant, email="invoice@example.com", billing_type="invoice")


@pytest.fixture
def plan_and_price(tenant):
    plan, price = make_plan(tenant, amount=1000, code_name="pro")
    make_usage_price(tenant, plan)
    return plan, price


@pytest.fixture
def seat_plan(tenant):
    return make_plan(tenant, amount=1000, code_name="team", per_seat=True)
