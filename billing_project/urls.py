from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from billing_project.health import healthz
from tenants.api import errors

api_v1 = [
    path("", include("customers.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include(api_v1)),
    # Anything else under /api/ is an unknown route: 404 in the API's error shape, whatever DEBUG.
    re_path(r"^api/", errors.not_found_view),
    path("admin/", admin.site.urls),
]

handler400 = errors.bad_request_view
handler403 = errors.permission_denied_view
handler404 = errors.not_found_view
handler500 = errors.server_error_view
