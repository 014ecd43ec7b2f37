from django.conf import settings

from tenants.api.errors import error_response


class ApiBodySizeLimitMiddleware:
    """413 for API request bodies over `DATA_UPLOAD_MAX_MEMORY_SIZE`, before anything reads them.
    (DRF's parsers read the stream directly, so Django's own limit would not apply.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, ["Content-Length must be an integer."])
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if limit is not None and length > limit:
                return error_response(413, [f"The request body is larger than {limit} bytes."])
        return self.get_response(request)
