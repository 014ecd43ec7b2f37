from django.core.management.base import BaseCommand, CommandError

from tenants.services import TenantInputError, tenant_create


class Command(BaseCommand):
    help = "Create a tenant: a company that bills its customers on this platform."

    def add_arguments(self, parser):
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--currency", default="EUR")
        parser.add_argument("--country", default="")
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, slug, name, currency, country, timezone, **options):
        try:
            tenant = tenant_create(
                slug=slug, name=name, currency=currency, country=country, timezone_name=timezone
            )
        except TenantInputError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Created tenant {tenant.slug} ({tenant.name}): {tenant.currency}, "
            f"{tenant.country or 'no country'}, {tenant.timezone}. Id {tenant.id}"
        )
