from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.http import JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from billing_project.health import healthz
from tenants.api import errors

api_v1 = [
    path("", include("customers.api.urls")),
    path("", include("usage.api.urls")),
    path("", include("subscriptions.api.urls")),
    path("", include("invoicing.api.urls")),
    path("", include("webhooks.api.urls")),
    path("", include("quotas.api.urls")),
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

if settings.SERVE_STATIC:
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}))

if settings.BENCH_BARE_VIEW:

    def bench_bare_view(request):
        return JsonResponse({"status": "ok", "items": [1, 2, 3]})

    urlpatterns.append(path("bench/bare", bench_bare_view))

handler400 = errors.bad_request_view
handler403 = errors.permission_denied_view
handler404 = errors.not_found_view
handler500 = errors.server_error_view
