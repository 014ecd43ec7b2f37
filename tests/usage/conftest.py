import datetime as dt

import pytest
import time_machine

from tests.usage.factories import make_customer, make_metric, make_subscription

UTC = dt.UTC
# Subscriptions start at an anchor that is not on the hour, so periods have partial edge hours.
ANCHOR = dt.datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
NOW = ANCHOR + dt.timedelta(days=10)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def customer(tenant):
    return make_customer(tenant, email="metered@example.com", reference="cust-metered")


@pytest.fixture
def subscription(customer, clock):
    return make_subscription(customer, anchor=ANCHOR)


@pytest.fixture
def calls(tenant):
    return make_metric(tenant, "api_calls", "sum")
