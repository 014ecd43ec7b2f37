"""Default periodic jobs. Beat reads them from the database (django-celery-beat) where staff can
edit them in the admin; `ensure_default_schedule` adds the missing ones after every migrate and
never overwrites an entry staff have changed."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DefaultJob:
    name: str
    task: str
    every_seconds: int


DEFAULT_SCHEDULE = [
    DefaultJob("Prune idempotency keys", "tenants.tasks.prune_idempotency_keys", 3600),
    DefaultJob("Run billing", "invoicing.tasks.run_billing", 60),
    DefaultJob("Retry failed payments", "invoicing.tasks.retry_failed_payments", 600),
    DefaultJob("Deliver webhooks", "webhooks.tasks.deliver_due_webhooks", 15),
    DefaultJob("Evaluate usage limits", "usage.tasks.evaluate_usage_limits", 300),
    DefaultJob("Resume plan transitions", "quotas.tasks.resume_plan_transitions", 60),
]


def ensure_default_schedule() -> int:
    """Create the default periodic tasks that do not exist yet; return how many were created."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = 0
    for job in DEFAULT_SCHEDULE:
        if PeriodicTask.objects.filter(name=job.name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=job.every_seconds, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(name=job.name, task=job.task, interval=interval)
        created += 1
    return created
