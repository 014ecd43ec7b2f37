"""Beat tasks of the billing clock; thin wrappers over the engine, safe to run twice."""

from celery import shared_task

from invoicing import engine


@shared_task(name="invoicing.tasks.run_billing")
def run_billing() -> str:
    return engine.billing_run().summary()


@shared_task(name="invoicing.tasks.retry_failed_payments")
def retry_failed_payments() -> str:
    report = engine.BillingRunReport(at=engine.timezone.now())
    engine.dunning_run(at=report.at, report=report, batch_size=engine.BATCH_SIZE)
    return report.summary()
