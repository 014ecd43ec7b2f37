"""Payment gateways: the interface the invoicing services charge through, and the one selected
by `BILLING["PAYMENT_GATEWAY"]`. Card data never reaches the platform: gateways hand back a
token and display data."""

from invoicing.gateways.base import (
    CardDetails,
    CardError,
    ChargeRequest,
    GatewayResult,
    PaymentGateway,
    get_gateway,
)

__all__ = [
    "CardDetails",
    "CardError",
    "ChargeRequest",
    "GatewayResult",
    "PaymentGateway",
    "get_gateway",
]
