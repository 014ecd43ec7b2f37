from rest_framework.routers import SimpleRouter

from customers.api.serializers import customer_data
from customers.api.views import CustomerViewSet, NamespaceViewSet
from customers.selectors import customer_for_key
from subscriptions.selectors import as_uuid
from tenants.api import hot

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")
router.register("namespaces", NamespaceViewSet, basename="namespace")

urlpatterns = hot.with_hot_views(
    router.urls,
    {
        "customer-detail": lambda view: hot.hot_retrieve(
            view, parse=lambda pk: as_uuid(pk), fetch=customer_for_key, render=customer_data
        )
    },
)
