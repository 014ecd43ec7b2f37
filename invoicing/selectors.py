"""Reads for invoicing: revenue for the admin's chart."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Sum
from django.db.models.functions import TruncMonth

from billing_project import billing_math
from invoicing.models import Invoice


@dataclass(frozen=True)
class MonthlyRevenue:
    month: dt.date
    currency: str
    invoices: int
    total: int  # minor units, tax included

    @property
    def formatted(self) -> str:
        return billing_math.format_money(self.total, self.currency)


def monthly_revenue(*, invoices, since: dt.datetime) -> list[MonthlyRevenue]:
    """Paid invoices per month (of payment) and currency, oldest first. `invoices` is the
    queryset the caller may see (the admin scopes it to the staff member's tenants)."""
    rows = (
        invoices.filter(status=Invoice.Status.PAID, paid_at__gte=since)
        .annotate(month=TruncMonth("paid_at", tzinfo=dt.UTC))
        .values("month", "currency")
        .annotate(invoices=Count("id"), total=Sum("total"))
        .order_by("month", "currency")
    )
    return [
        MonthlyRevenue(
            month=row["month"].date(),
            currency=row["currency"],
            invoices=row["invoices"],
            total=row["total"] or 0,
        )
        for row in rows
    ]
