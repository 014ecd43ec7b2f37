import pytest

from invoicing.gateways import CardError, get_gateway
from invoicing.gateways.sandbox import SandboxGateway
from invoicing.models import SandboxCharge


@pytest.fixture
def gateway():
    return get_gateway()


def test_the_sandbox_is_the_default_gateway(gateway):
    assert isinstance(gateway, SandboxGateway)


@pytest.mark.parametrize(
    ("token", "failure_reason"),
    [
        ("tok_visa", None),
        ("tok_mastercard", None),
        ("tok_card_declined", "general_decline"),
        ("tok_expired_card", "expired_card"),
        ("tok_insufficient_funds", "lack_of_funds"),
        ("tok_authentication_required", "authentication_required"),
    ],
)
def test_a_card_keeps_its_tokens_behaviour_for_every_charge(tenant, gateway, token, failure_reason):
    card = gateway.tokenise(tenant=tenant, card_token=token)
    assert token not in (card.last_four, card.brand)
    for attempt in range(2):
        result = gateway.charge(
            tenant=tenant,
            amount=500,
            currency="EUR",
            gateway_reference=card.gateway_reference,
            idempotency_key=f"key-{attempt}",
        )
        assert result.succeeded is (failure_reason is None)
        assert result.failure_reason == failure_reason


def test_an_unknown_token_is_invalid_details(tenant, gateway):
    with pytest.raises(CardError) as error:
        gateway.tokenise(tenant=tenant, card_token="tok_nonsense")
    assert error.value.failure_reason == "invalid_details"


def test_a_retry_with_the_same_key_returns_the_first_result_and_charges_once(tenant, gateway):
    card = gateway.tokenise(tenant=tenant, card_token="tok_visa")
    first = gateway.charge(
        tenant=tenant,
        amount=500,
        currency="EUR",
        gateway_reference=card.gateway_reference,
        idempotency_key="inv-1",
    )
    again = gateway.charge(
        tenant=tenant,
        amount=999,
        currency="EUR",
        gateway_reference=card.gateway_reference,
        idempotency_key="inv-1",
    )
    assert again == first
    assert SandboxCharge.objects.filter(tenant=tenant, idempotency_key="inv-1").count() == 1
    assert SandboxCharge.objects.get(idempotency_key="inv-1").amount == 500


def test_keys_are_per_tenant(tenant, other_tenant, gateway):
    card = gateway.tokenise(tenant=tenant, card_token="tok_visa")
    for owner in (tenant, other_tenant):
        gateway.charge(
            tenant=owner,
            amount=1,
            currency="EUR",
            gateway_reference=card.gateway_reference,
            idempotency_key="same",
        )
    assert SandboxCharge.objects.filter(idempotency_key="same").count() == 2
