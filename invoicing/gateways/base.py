"""The gateway interface. Every call that moves money takes an idempotency key: calling again
with the same key returns the first result and moves nothing twice."""

from dataclasses import dataclass

from django.utils.module_loading import import_string

from billing_project.conf import billing_settings

GATEWAYS = {"sandbox": "invoicing.gateways.sandbox.SandboxGateway"}


class CardError(Exception):
    """The gateway refused a card; `failure_reason` is one of seed 001's reasons."""

    def __init__(self, failure_reason: str, message: str = ""):
        super().__init__(message or failure_reason)
        self.failure_reason = failure_reason


@dataclass(frozen=True)
class CardDetails:
    """What the platform may keep about a card: the gateway's token and display data."""

    gateway_reference: str
    brand: str
    last_four: str
    expiry_month: int
    expiry_year: int


@dataclass(frozen=True)
class GatewayResult:
    succeeded: bool
    failure_reason: str | None
    external_reference: str


@dataclass(frozen=True)
class ChargeRequest:
    tenant_id: object
    idempotency_key: str
    amount: int
    currency: str
    gateway_reference: str


class PaymentGateway:
    def tokenise(self, *, tenant, card_token: str) -> CardDetails:
        raise NotImplementedError

    def charge(
        self, *, tenant, amount: int, currency: str, gateway_reference: str, idempotency_key: str
    ) -> GatewayResult:
        raise NotImplementedError

    def charge_many(self, requests: list[ChargeRequest]) -> list[GatewayResult]:
        """Charge several cards; results in the order of `requests`. Gateways with a batch API
        override this; the default calls `charge` for each."""
        return [
            self.charge(
                tenant=request.tenant_id,
                amount=request.amount,
                currency=request.currency,
                gateway_reference=request.gateway_reference,
                idempotency_key=request.idempotency_key,
            )
            for request in requests
        ]

    def refund(
        self, *, tenant, charge_reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        raise NotImplementedError


def get_gateway() -> PaymentGateway:
    name = billing_settings.PAYMENT_GATEWAY or "sandbox"
    path = GATEWAYS.get(name, name)
    return import_string(path)()
