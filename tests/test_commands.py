"""The management commands of API.md (Operations): what an operator types and reads."""

import io
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from billing_project.demo import DEMO_SLUG
from customers.models import Customer
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db


def _run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def _key_works(clear_key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_X_BILLING_API_KEY=clear_key)
    return client.get("/api/v1/customers").status_code == 200


def test_create_tenant():
    lines = _run(
        "create_tenant", "--slug", "acme", "--name", "Acme", "--currency", "usd",
        "--country", "us", "--timezone", "America/New_York",
    )  # fmt: skip
    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.name, tenant.currency, tenant.country, tenant.timezone) == (
        "Acme",
        "USD",
        "US",
        "America/New_York",
    )
    assert "acme" in lines[-1] and str(tenant.id) in lines[-1]


def test_create_tenant_defaults():
    _run("create_tenant", "--slug", "beta", "--name", "Beta")
    tenant = Tenant.objects.get(slug="beta")
    assert (tenant.currency, tenant.country, tenant.timezone) == ("EUR", "", "UTC")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--currency", "EURO"], "EURO is not an ISO 4217 currency code"),
        (["--currency", "XYZ"], "XYZ is not an ISO 4217 currency code"),
        (["--country", "Germany"], "GERMANY is not an ISO 3166-1 alpha-2 country code"),
        (["--country", "D1"], "is not an ISO 3166-1 alpha-2 country code"),
        (["--timezone", "Mars/Olympus"], "Mars/Olympus is not a known IANA time zone"),
    ],
)
def test_create_tenant_refuses_bad_input(extra, message):
    with pytest.raises(CommandError, match=message):
        _run("create_tenant", "--slug", "acme", "--name", "Acme", *extra)
    assert not Tenant.objects.exists()


def test_create_tenant_refuses_a_duplicate_slug():
    _run("create_tenant", "--slug", "acme", "--name", "Acme")
    with pytest.raises(CommandError, match="slug 'acme' exists already"):
        _run("create_tenant", "--slug", "acme", "--name", "Other")
    assert Tenant.objects.get().name == "Acme"


def test_create_api_key_prints_a_working_key_alone_on_the_last_line(tenant):
    lines = _run("create_api_key", "--tenant", tenant.slug, "--name", "ci")
    clear_key = lines[-1]
    assert clear_key.startswith("bk_") and " " not in clear_key
    assert len(lines) >= 2 and clear_key not in lines[0]
    assert ApiKey.objects.get().name == "ci"
    assert _key_works(clear_key)


def test_create_api_key_with_expiry(tenant):
    clear_key = _run(
        "create_api_key", "--tenant", tenant.slug, "--expires-at", "2000-01-01T00:00:00Z"
    )[-1]
    assert not _key_works(clear_key)
    with pytest.raises(CommandError, match="not an RFC 3339 instant"):
        _run("create_api_key", "--tenant", tenant.slug, "--expires-at", "tomorrow")


def test_create_api_key_for_an_unknown_tenant_fails():
    with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
        _run("create_api_key", "--tenant", "nope")
    assert not ApiKey.objects.exists()


def test_seed_demo_prints_a_working_key_last():
    lines = _run("seed_demo")
    assert _key_works(lines[-1])
    demo = Tenant.objects.get(slug=DEMO_SLUG)
    assert Customer.objects.for_tenant(demo).count() >= 3


def test_seed_demo_if_empty_on_a_seeded_database_prints_a_new_key_and_seeds_nothing_more():
    first_key = _run("seed_demo")[-1]
    customers = Customer.objects.count()

    lines = _run("seed_demo", "--if-empty")

    assert lines[-1] != first_key
    assert _key_works(lines[-1]) and _key_works(first_key)
    assert Customer.objects.count() == customers
    assert Tenant.objects.count() == 1


def test_bad_input_exits_non_zero_from_the_shell(tmp_path):
    """What a script sees: a non-zero exit status and the message on stderr (the input is refused
    before the database is touched, so an empty scratch database will do)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "create_tenant", "--slug", "x", "--name", "X",
         "--currency", "EURO"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'scratch.db'}"},
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "EURO is not an ISO 4217 currency code" in result.stderr
    assert "Traceback" not in result.stderr
