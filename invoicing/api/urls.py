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
urlpatterns = [
    *router.urls,
    path(
        f"{customer}invoices",
        views.CustomerInvoiceViewSet.as_view({"get": "list"}),
        name="customer-invoices",
    ),
    path(
        f"{customer}payments",
        views.CustomerPaymentViewSet.as_view({"get": "list"}),
        name="customer-payments",
    ),
    path(
        f"{customer}refunds",
        views.CustomerRefundViewSet.as_view({"get": "list"}),
        name="customer-refunds",
    ),
    path(
        f"{customer}payment-methods",
        views.CustomerPaymentMethodViewSet.as_view({"get": "list"}),
        name="customer-payment-methods",
    ),
    path(
        f"{customer}payment-methods/start-collection",
        views.CustomerPaymentMethodViewSet.as_view({"post": "start_collection"}),
        name="customer-payment-methods-start-collection",
    ),
    path(
        f"{customer}payment-methods/complete-collection",
        views.CustomerPaymentMethodViewSet.as_view({"post": "complete_collection"}),
        name="customer-payment-methods-complete-collection",
    ),
    path(
        f"{customer}payment-methods/<uuid:pm_id>",
        views.CustomerPaymentMethodViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="customer-payment-method-detail",
    ),
    path(
        f"{customer}payment-methods/<uuid:pm_id>/default",
        views.CustomerPaymentMethodViewSet.as_view({"post": "default"}),
        name="customer-payment-method-default",
    ),
]
