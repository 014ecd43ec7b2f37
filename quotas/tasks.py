"""Plan transitions on a worker. Both tasks are safe to run twice (a transition is claimed
before it runs and each of its steps is skipped when already done)."""

from celery import shared_task
from django.db import OperationalError

from quotas import services


@shared_task(
    name="quotas.tasks.plan_transition_execute",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def plan_transition_execute(transition_id: str) -> str | None:
    transition = services.plan_transition_execute(transition_id=transition_id)
    return transition.state if transition is not None else None


@shared_task(name="quotas.tasks.resume_plan_transitions")
def resume_plan_transitions() -> int:
    return services.plan_transitions_resume()
