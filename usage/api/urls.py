from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import hot
from usage.api import views

router = SimpleRouter(trailing_slash=False)
router.register("metrics", views.MetricViewSet, basename="metric")
router.register("events", views.EventViewSet, basename="event")

customer_usage_limits = views.CustomerUsageLimitViewSet.as_view({"get": "list", "post": "create"})
customer_usage_limit = views.CustomerUsageLimitViewSet.as_view({"delete": "destroy"})

urlpatterns = [
    path(
        "subscriptions/<uuid:subscription_id>/usages",
        views.SubscriptionUsagesView.as_view(),
        name="subscription-usages",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/usages/<int:usage_reference>",
        views.SubscriptionUsageView.as_view(),
        name="subscription-usage",
    ),
    path(
        "customers/<uuid:customer_id>/costs",
        views.CustomerCostsView.as_view(),
        name="customer-costs",
    ),
    path(
        "customers/<uuid:customer_id>/usage-limits",
        customer_usage_limits,
        name="customer-usage-limits",
    ),
    path(
        "customers/<uuid:customer_id>/usage-limits/<uuid:limit_id>",
        customer_usage_limit,
        name="customer-usage-limit",
    ),
    *hot.with_hot_views(
        router.urls,
        {"event-list": lambda view: hot.hot_post(view, handle=views.ingest_one, scope="ingest")},
    ),
]
