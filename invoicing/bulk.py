"""Moved to billing_project.bulk (webhooks uses it too and must not import invoicing); kept so
that existing imports keep working."""

from billing_project.bulk import fast_insert, rows_update

__all__ = ["fast_insert", "rows_update"]
