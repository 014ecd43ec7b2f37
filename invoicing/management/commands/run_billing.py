"""`manage.py run_billing [--at RFC3339]`: one pass of the billing clock (the beat task's code)."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from billing_project.celery import tune_garbage_collector
from invoicing.engine import billing_run


def parse_instant(value: str) -> dt.datetime:
    parsed = parse_datetime(value.strip().replace(" ", "T"))
    if parsed is None:
        raise CommandError(
            f"--at must be an RFC 3339 timestamp (2027-01-01T00:00:00Z), got {value!r}"
        )
    if parsed.tzinfo is None:
        raise CommandError("--at must carry a UTC offset, e.g. 2027-01-01T00:00:00Z")
    return parsed.astimezone(dt.UTC)


class Command(BaseCommand):
    help = "Run one pass of billing: trial ends, cancellations, renewals, charges, dunning."

    def add_arguments(self, parser):
        parser.add_argument("--at", help="Act as if now were this instant (RFC 3339).")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, at=None, batch_size=500, **options):
        instant = parse_instant(at) if at else None
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        tune_garbage_collector()
        report = billing_run(at=instant, batch_size=batch_size)
        self.stdout.write(report.summary())
        for subscription_id, reason in report.set_aside:
            self.stderr.write(f"set aside {subscription_id}: {reason}")
