# At most one post_invoice invoice per subscription and closed period, enforced by the database
# (a partial unique index), so that a re-run or a racing worker can never bill it twice. Nothing
# issued such invoices before this migration, so there are no duplicates to resolve.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0001_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.UniqueConstraint(
                condition=models.Q(("billing_reason", "post_invoice")),
                fields=("tenant", "subscription", "period_start"),
                name="invoice_one_post_invoice_per_period",
            ),
        ),
    ]
