from rest_framework.routers import SimpleRouter

from webhooks.api.views import WebhookDeliveryViewSet, WebhookEndpointViewSet

router = SimpleRouter(trailing_slash=False)
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhook-deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
