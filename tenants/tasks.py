import logging

from celery import shared_task

from tenants.services import idempotency_prune

logger = logging.getLogger(__name__)


@shared_task(name="tenants.tasks.prune_idempotency_keys")
def prune_idempotency_keys() -> int:
    deleted = idempotency_prune()
    logger.info("Pruned %d expired idempotency keys", deleted)
    return deleted
