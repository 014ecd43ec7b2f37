import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
application = get_wsgi_application()
# Import the URLconf (and with it every view, serializer and schema hook) now rather than on a
# worker's first request, which would otherwise take a second or two of CPU, times each worker.
_ = get_resolver().url_patterns
