from django.urls import path
from rest_framework.routers import SimpleRouter

from invoicing.api import views

router = SimpleRouter(trailing_slash=False)
router.register("invoices", views.InvoiceViewSet, basename="invoice")
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("refunds", views.RefundViewSet, basename="refund")
router.register("receipts", views.ReceiptViewSet, basename="receipt")
router.register("payment-methods", views.PaymentMethodViewSet, basename="payment-method")

customer = "customers/<uuid:customer_id>/"
customer_lists = {
    "invoices": views.CustomerInvoiceViewSet,
    "payments": views.CustomerPaymentViewSet,
    "refunds": views.CustomerRefundViewSet,
    "payment-methods": views.CustomerPaymentMethodViewSet,
}
payment_methods = views.CustomerPaymentMethodViewSet
payment_method = f"{customer}payment-methods/<uuid:pm_id>"

urlpatterns = [
    *router.urls,
    *(
        path(f"{customer}{resource}", viewset.as_view({"get": "list"}), name=f"customer-{resource}")
        for resource, viewset in customer_lists.items()
    ),
    *(
        path(
            f"{customer}payment-methods/{step}-collection",
            payment_methods.as_view({"post": f"{step}_collection"}),
            name=f"customer-payment-methods-{step}-collection",
        )
        for step in ("start", "complete")
    ),
    path(
        payment_method,
        payment_methods.as_view({"get": "retrieve", "delete": "destroy"}),
        name="customer-payment-method-detail",
    ),
    path(
        f"{payment_method}/default",
        payment_methods.as_view({"post": "default"}),
        name="customer-payment-method-default",
    ),
]
