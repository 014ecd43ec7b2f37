"""The sandbox gateway (API.md): no network, a card processor's test mode. A payment method made
from a test token keeps that token's behaviour for every later charge. Its ledger is a table, so
idempotency holds across processes: one row per (tenant, key), first writer wins."""

import secrets

from invoicing.gateways.base import (
    CardDetails,
    CardError,
    ChargeRequest,
    GatewayResult,
    PaymentGateway,
)
from invoicing.models import FailureReason, SandboxCharge

# token: (brand, last four, failure reason of every charge or None)
TEST_CARDS = {
    "tok_visa": ("visa", "4242", None),
    "tok_mastercard": ("mastercard", "4444", None),
    "tok_card_declined": ("visa", "0002", FailureReason.GENERAL_DECLINE),
    "tok_expired_card": ("visa", "0069", FailureReason.EXPIRED_CARD),
    "tok_insufficient_funds": ("visa", "9995", FailureReason.LACK_OF_FUNDS),
    "tok_authentication_required": ("visa", "3184", FailureReason.AUTHENTICATION_REQUIRED),
}
REFERENCE_PREFIX = "sbx_card_"
EXPIRY_MONTH, EXPIRY_YEAR = 12, 2034


def _card_token_of(gateway_reference: str) -> str:
    # References look like sbx_card_<test token>_<random>, so the behaviour travels with them.
    if not gateway_reference.startswith(REFERENCE_PREFIX):
        return ""
    return gateway_reference[len(REFERENCE_PREFIX) :].rsplit("_", 1)[0]


def _outcome(gateway_reference: str) -> str | None:
    card = TEST_CARDS.get(_card_token_of(gateway_reference))
    return FailureReason.INVALID_DETAILS.value if card is None else card[2]


def _ledger_row(tenant_id, kind, key, amount, currency, gateway_reference) -> SandboxCharge:
    failure = _outcome(gateway_reference) if kind == SandboxCharge.Kind.CHARGE else None
    return SandboxCharge(
        tenant_id=tenant_id,
        kind=kind,
        idempotency_key=key,
        amount=amount,
        currency=currency,
        gateway_reference=gateway_reference,
        succeeded=failure is None,
        failure_reason=failure,
        external_reference=f"sbx_{kind[:2]}_{secrets.token_hex(12)}",
    )


def _tenant_id(tenant) -> object:
    return getattr(tenant, "pk", tenant)


class SandboxGateway(PaymentGateway):
    def tokenise(self, *, tenant, card_token: str) -> CardDetails:
        card = TEST_CARDS.get(card_token)
        if card is None:
            raise CardError(FailureReason.INVALID_DETAILS, "The card token is not valid.")
        brand, last_four, _ = card
        return CardDetails(
            gateway_reference=f"{REFERENCE_PREFIX}{card_token}_{secrets.token_hex(8)}",
            brand=brand,
            last_four=last_four,
            expiry_month=EXPIRY_MONTH,
            expiry_year=EXPIRY_YEAR,
        )

    def charge(
        self, *, tenant, amount: int, currency: str, gateway_reference: str, idempotency_key: str
    ) -> GatewayResult:
        request = ChargeRequest(
            _tenant_id(tenant), idempotency_key, amount, currency, gateway_reference
        )
        return self.charge_many([request])[0]

    def charge_many(self, requests: list[ChargeRequest]) -> list[GatewayResult]:
        return self._record(SandboxCharge.Kind.CHARGE, requests)

    def refund(
        self, *, tenant, charge_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        request = ChargeRequest(
            _tenant_id(tenant), idempotency_key, amount, currency, charge_reference
        )
        return self._record(SandboxCharge.Kind.REFUND, [request])[0]

    @staticmethod
    def _record(kind: str, requests: list[ChargeRequest]) -> list[GatewayResult]:
        if not requests:
            return []
        # Insert-or-keep, then read back: whoever inserted a key first decides its result.
        SandboxCharge.objects.bulk_create(
            [
                _ledger_row(
                    r.tenant_id, kind, r.idempotency_key, r.amount, r.currency, r.gateway_reference
                )
                for r in requests
            ],
            ignore_conflicts=True,
        )
        results = {}
        for tenant_id in {r.tenant_id for r in requests}:
            keys = [r.idempotency_key for r in requests if r.tenant_id == tenant_id]
            for key, succeeded, failure, reference in SandboxCharge.objects.filter(
                tenant_id=tenant_id, kind=kind, idempotency_key__in=keys
            ).values_list("idempotency_key", "succeeded", "failure_reason", "external_reference"):
                results[(tenant_id, key)] = GatewayResult(succeeded, failure, reference)
        return [results[(r.tenant_id, r.idempotency_key)] for r in requests]
