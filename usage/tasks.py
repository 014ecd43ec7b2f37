"""Usage-limit evaluation: periodically for every customer with limits, and soon after ingestion
bursts for the customers that sent events. Safe to run twice (a limit fires once per period)."""

from celery import shared_task

from usage import services


@shared_task(name="usage.tasks.evaluate_usage_limits")
def evaluate_usage_limits() -> int:
    return services.usage_limits_evaluate()


@shared_task(name="usage.tasks.evaluate_customer_usage_limits")
def evaluate_customer_usage_limits(customer_ids: list[str]) -> int:
    return services.usage_limits_evaluate(customer_ids=customer_ids)
