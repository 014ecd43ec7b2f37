import logging

from celery import shared_task

from webhooks.services import deliveries_send_due

logger = logging.getLogger(__name__)


@shared_task(name="webhooks.tasks.deliver_due_webhooks", max_retries=3, default_retry_delay=10)
def deliver_due_webhooks() -> int:
    """Send every webhook delivery that is due; safe to run any number of times at once."""
    sent = deliveries_send_due()
    if sent:
        logger.info("Attempted %d webhook deliveries", sent)
    return sent
