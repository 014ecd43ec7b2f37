"""Benchmark of the renewal run (not a test): 10,000 monthly subscriptions fall due at once and two
`manage.py run_billing` processes race to renew them, each renewal with its invoice and a sandbox
charge; then invoice PDF renders per second.

    .venv/bin/python bench/billing_run.py [--subscriptions 10000] [--workers 2] [--pdfs 200]

Runs on PostgreSQL in its own database, billing_bench_run (created and migrated if missing, emptied
of billing data on each run), on the server of DATABASE_URL (default postgres@127.0.0.1:5432).
"""

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "billing_bench_run"
DUE_AT = "2027-02-01T00:00:00Z"


def bench_database_url() -> str:
    base = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres")
    if not base.scheme.startswith("postgres"):
        sys.exit("The benchmark needs PostgreSQL: set DATABASE_URL to a postgres:// URL.")
    return urlunsplit(base._replace(path=f"/{BENCH_DB}"))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(count: int):
    """Bulk-insert one tenant, `count` card customers each with a card, and `count` monthly
    subscriptions whose first period ends at DUE_AT."""
    from decimal import Decimal

    from django.core.management import call_command

    from customers.models import Customer
    from invoicing.gateways import get_gateway
    from invoicing.models import PaymentMethod
    from subscriptions.models import (
        Price,
        Product,
        Subscription,
        SubscriptionItem,
        SubscriptionPlan,
    )
    from tenants.models import Tenant

    # The benchmark's own database: start from empty tables every time.
    call_command("flush", interactive=False, verbosity=0)
    tenant = Tenant.objects.create(slug="bench", name="Bench Cloud", country="DE", currency="EUR")
    product = Product.objects.create(tenant=tenant, name="Pro")
    price = Price.objects.create(
        tenant=tenant, product=product, amount=1999, currency="EUR", schedule="month"
    )
    plan = SubscriptionPlan.objects.create(
        tenant=tenant, name="Pro", code_name="pro", product=product
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(
                tenant=tenant,
                email=f"c{i}@bench.example",
                country="DE",
                standard_tax_rate=Decimal("19"),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )
    card = get_gateway().tokenise(tenant=tenant, card_token="tok_visa")
    PaymentMethod.objects.bulk_create(
        [
            PaymentMethod(
                tenant=tenant,
                customer=c,
                name="Visa",
                brand=card.brand,
                last_four=card.last_four,
                expiry_month=12,
                expiry_year=2034,
                default=True,
                gateway_reference=card.gateway_reference,
            )
            for c in customers
        ],
        batch_size=2000,
    )
    anchor = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    subscriptions = Subscription.objects.bulk_create(
        [
            Subscription(
                tenant=tenant,
                customer=c,
                plan=plan,
                price=price,
                schedule="month",
                currency="EUR",
                anchor=anchor,
                period_index=0,
                current_period_start=anchor,
                valid_until=dt.datetime(2027, 2, 1, tzinfo=dt.UTC),
                started_at=anchor,
            )
            for c in customers
        ],
        batch_size=2000,
    )
    SubscriptionItem.objects.bulk_create(
        [
            SubscriptionItem(
                tenant=tenant,
                subscription=s,
                item_type="plan",
                product=product,
                price=price,
                quantity=1,
                unit_price=Decimal(1999),
            )
            for s in subscriptions
        ],
        batch_size=2000,
    )
    return tenant


def race(workers: int, url: str) -> float:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "manage.py", "run_billing", "--at", DUE_AT]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    for index, process in enumerate(processes):
        out, _ = process.communicate()
        print(f"  worker {index + 1}: {out.strip()}")
        if process.returncode:
            sys.exit(f"worker {index + 1} failed with exit code {process.returncode}")
    return time.perf_counter() - started


def pdf_rate(tenant, count: int) -> float:
    from django.core.cache import cache

    from invoicing import pdf
    from invoicing.models import Invoice

    invoices = list(Invoice.objects.filter(tenant=tenant).prefetch_related("lines")[:count])
    cache.clear()
    started = time.perf_counter()
    for invoice in invoices:
        pdf.invoice_pdf(invoice)
    return len(invoices) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pdfs", type=int, default=200)
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    setup_django(url)
    from invoicing.models import Invoice, Payment

    started = time.perf_counter()
    tenant = seed(args.subscriptions)
    print(f"seeded {args.subscriptions} due subscriptions in {time.perf_counter() - started:.1f} s")

    load_before = os.getloadavg()
    elapsed = race(args.workers, url)
    load_after = os.getloadavg()
    invoices = Invoice.objects.filter(tenant=tenant).count()
    charges = Payment.objects.filter(tenant=tenant, status="completed").count()
    duplicates = (
        invoices - Invoice.objects.filter(tenant=tenant).values("subscription").distinct().count()
    )
    print(
        f"run_billing with {args.workers} racing processes: {elapsed:.2f} s wall "
        f"(including process start-up)"
    )
    print(f"renewals/s: {args.subscriptions / elapsed:,.0f}")
    print(
        "load average (1/5/15 min) before the race: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after: "
        + " ".join(f"{x:.2f}" for x in load_after)
        + f" ({os.cpu_count()} CPUs, shared)"
    )
    print(f"invoices created: {invoices} (expected {args.subscriptions}; duplicates: {duplicates})")
    print(f"sandbox charges completed: {charges}")
    print(f"PDF renders/s: {pdf_rate(tenant, args.pdfs):,.0f}")
    if invoices != args.subscriptions or duplicates:
        sys.exit("FAILED: not exactly one invoice per subscription")


if __name__ == "__main__":
    main()
