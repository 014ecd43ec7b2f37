from rest_framework.routers import SimpleRouter

from customers.api.views import CustomerViewSet, NamespaceViewSet

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")
router.register("namespaces", NamespaceViewSet, basename="namespace")

urlpatterns = router.urls
