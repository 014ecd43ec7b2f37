"""The project's WSGI application with no ingestion guard: bench/ingest_quotas.py's baseline."""

from billing_project.wsgi import application
from usage import services

services.INGESTION_GUARDS.clear()

__all__ = ["application"]
