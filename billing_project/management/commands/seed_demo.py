from django.core.management.base import BaseCommand

from billing_project.demo import DEMO_SLUG, seed_demo
from customers.models import Customer
from tenants.models import Tenant
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Seed a demo tenant (catalog, customers, subscriptions, usage); print an API key last."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Seed only when the database has no tenant; otherwise just print a new demo key.",
        )

    def handle(self, *args, if_empty, **options):
        if if_empty and Tenant.objects.exists():
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
            if tenant is None:
                self.stdout.write("The database has tenants already and no demo tenant.")
                return
            clear_key = api_key_create(tenant=tenant, name="demo").clear_key
            self.stdout.write(f"Demo tenant {tenant.slug} exists already. A new API key:")
        else:
            tenant, clear_key = seed_demo()
            customers = Customer.objects.for_tenant(tenant).count()
            self.stdout.write(
                f"Demo tenant {tenant.slug} ({tenant.name}) has {customers} customers. API key:"
            )
        self.stdout.write(clear_key)
