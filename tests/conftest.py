import os

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.factories import TenantFactory, make_api_key

IN_CI = os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Nothing may be skipped in CI: a skip there is a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"Skipped in CI, which must run everything: {report.longrepr}"


@pytest.fixture(autouse=True, scope="session")
def _celery_eager():
    """Tasks run in-process unless a test starts a real worker (tests/integration)."""
    from billing_project.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme", name="Acme Cloud", country="DE", currency="EUR")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex", name="Globex", country="FR", currency="EUR")


@pytest.fixture
def api_key(tenant) -> str:
    return make_api_key(tenant)


@pytest.fixture
def api(api_key) -> APIClient:
    """An API client authenticated as `tenant` with the header."""
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=api_key)
    return client


@pytest.fixture
def other_api(other_tenant) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=make_api_key(other_tenant))
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session", autouse=True)
def _close_stray_test_database_sessions(django_db_setup, django_db_blocker):
    """Threads of the browser tests' live server can hold a PostgreSQL session until the
    interpreter exits, which would stop the test database from being dropped at the end."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
