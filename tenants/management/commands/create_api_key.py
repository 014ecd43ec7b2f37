import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from tenants.models import Tenant
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant; the clear key is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--name", default="default")
        parser.add_argument("--expires-at", default=None, help="RFC 3339 instant, optional.")

    def handle(self, *args, tenant, name, expires_at, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        expiry = None
        if expires_at:
            expiry = parse_datetime(expires_at)
            if expiry is None:
                raise CommandError(f"--expires-at {expires_at!r} is not an RFC 3339 instant.")
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=dt.UTC)
        issued = api_key_create(tenant=found, name=name, expires_at=expiry)
        self.stdout.write(
            f"Created API key {issued.api_key.prefix}… ({name}) for tenant {found.slug}. "
            "It is shown once; store it now:"
        )
        self.stdout.write(issued.clear_key)
