from django.urls import path
from rest_framework.routers import SimpleRouter

from subscriptions.api import views

router = SimpleRouter(trailing_slash=False)
router.register("products", views.ProductViewSet, basename="product")
router.register("prices", views.PriceViewSet, basename="price")
router.register("features", views.FeatureViewSet, basename="feature")
router.register("subscription-plans", views.SubscriptionPlanViewSet, basename="subscription-plan")
router.register("vouchers", views.VoucherViewSet, basename="voucher")
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
router.register("subscription-items", views.SubscriptionItemViewSet, basename="subscription-item")
router.register("checkouts", views.CheckoutViewSet, basename="checkout")

customer_subscriptions = views.CustomerSubscriptionViewSet.as_view(
    {"get": "list", "post": "create"}
)
customer_active_subscriptions = views.CustomerActiveSubscriptionViewSet.as_view({"get": "list"})

urlpatterns = [
    path(
        "customers/<uuid:customer_id>/subscriptions",
        customer_subscriptions,
        name="customer-subscriptions",
    ),
    path(
        "customers/<uuid:customer_id>/subscriptions/active",
        customer_active_subscriptions,
        name="customer-subscriptions-active",
    ),
    path(
        "customers/<uuid:customer_id>/subscriptions/trial",
        views.CustomerTrialView.as_view(),
        name="customer-subscriptions-trial",
    ),
    path(
        "customers/<uuid:customer_id>/subscriptions/<str:product_id>/quantity",
        views.CustomerQuantityView.as_view(),
        name="customer-subscription-quantity",
    ),
    path(
        "customers/<uuid:customer_id>/vouchers",
        views.CustomerVoucherView.as_view(),
        name="customer-vouchers",
    ),
    path(
        "customers/<uuid:customer_id>/limits",
        views.CustomerLimitsView.as_view(),
        name="customer-limits",
    ),
    *router.urls,
]
