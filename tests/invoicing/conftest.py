from decimal import Decimal

import pytest
import time_machine

from tests.invoicing.factories import METERED_ANCHOR, make_card, make_customer


@pytest.fixture
def card_customer(tenant):
    """A customer taxed at 19 % with a card that is charged successfully (from METERED_ANCHOR)."""
    with time_machine.travel(METERED_ANCHOR, tick=False):
        customer = make_customer(tenant, standard_tax_rate=Decimal("19"))
        make_card(customer, "tok_visa")
    return customer
