"""The billing engine: one pass of the billing clock (trial ends, scheduled cancellations,
renewals with their invoices and charges, dunning retries). Safe to run in any number of
processes at once and twice for the same instant: due rows are claimed with SKIP LOCKED, each
batch is one transaction, and the database allows one invoice per subscription period, one
`post_invoice` invoice (a closed period's `post_invoice` usage) and one `final_usage` invoice (the
last period's usage of a subscription that ends)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_project import billing_math
from billing_project.bulk import fast_insert, rows_update
from customers.models import Customer
from invoicing import services
from invoicing.models import (
    FINAL_USAGE_REASON,
    POST_INVOICE_REASON,
    Invoice,
    Payment,
    PaymentMethod,
    same_period_reasons,
)
from subscriptions import services as subscription_services
from subscriptions.models import Subscription
from tenants.models import Tenant
from usage import selectors as usage_selectors
from usage import services as usage_services
from webhooks.services import emit_many

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_BATCH_COLLISIONS = 5
# What renewals pick up (subscriptions.services.BILLABLE_STATUSES, restated so that this module
# does not depend on the order SUBS's services import in).
BILLABLE_STATUSES = ("active", "pending_cancel", "overdue_payment_open")


@dataclass
class BillingRunReport:
    at: dt.datetime
    trials_ended: int = 0
    cancellations: int = 0
    changes_applied: int = 0
    renewals: int = 0
    invoices: int = 0
    charges: int = 0
    charges_failed: int = 0
    dunning_retries: int = 0
    set_aside: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Billing run at {self.at.isoformat()}: {self.renewals} renewals, "
            f"{self.invoices} invoices, {self.charges} charges ({self.charges_failed} failed), "
            f"{self.dunning_retries} dunning retries, {self.trials_ended} trials ended, "
            f"{self.cancellations} cancellations, {self.changes_applied} changes applied, "
            f"{len(self.set_aside)} set aside"
        )


def billing_run(*, at: dt.datetime | None = None, batch_size: int = BATCH_SIZE) -> BillingRunReport:
    report = BillingRunReport(at=at or timezone.now())
    trials_end(at=report.at, report=report)
    cancellations_apply(at=report.at, report=report)
    renewals_run(at=report.at, report=report, batch_size=batch_size)
    dunning_run(at=report.at, report=report, batch_size=batch_size)
    logger.info(report.summary())
    return report


# --- Trials and scheduled cancellations (rare: one by one, each in its own transaction) -------


def trials_end(*, at: dt.datetime, report: BillingRunReport) -> None:
    due = Subscription.objects.filter(status="trial_active", trial_ends_at__lte=at).order_by("id")
    for subscription in due.iterator():
        try:
            # It issues the first invoice and charges after its own commit, so no transaction here.
            subscription_services.subscription_end_trial(subscription=subscription, at=at)
            report.trials_ended += 1
        except Exception as error:
            _set_aside(report, subscription, error)


def cancellations_apply(*, at: dt.datetime, report: BillingRunReport) -> None:
    due = Subscription.objects.filter(
        status__in=BILLABLE_STATUSES, cancel_at__isnull=False, cancel_at__lte=at
    ).order_by("id")
    for pk in list(due.values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                subscription = (
                    Subscription.objects.select_for_update(skip_locked=True)
                    .filter(pk=pk, status__in=BILLABLE_STATUSES, cancel_at__lte=at)
                    .first()
                )
                if subscription is None:
                    continue
                ended = subscription_services.subscription_apply_scheduled_cancellation(
                    subscription=subscription, at=at
                )
                charges = final_usage_invoices_issue(subscriptions=[ended], at=at)
                report.cancellations += 1
        except Exception as error:
            _set_aside(report, Subscription(pk=pk), error)
            continue
        report.invoices += len(charges.invoices)
        attempts = final_usage_invoices_charge(charges, at=at)
        report.charges += len(attempts)
        report.charges_failed += _declined_count(attempts) + len(charges.no_card)


def _set_aside(report: BillingRunReport, subscription, error: Exception) -> None:
    logger.exception("Subscription %s set aside by the billing run: %s", subscription.pk, error)
    report.set_aside.append((str(subscription.pk), f"{type(error).__name__}: {error}"))


# --- Renewals --------------------------------------------------------------------------------


def _renewal_lines(subscriptions, periods: dict, report) -> dict:
    """Fixed fees of each subscription's new period, keyed by subscription id. One query for the
    batch; when that fails, each subscription is tried on its own so that the one at fault is
    set aside (left out of the answer) instead of failing its batch."""
    try:
        with transaction.atomic():
            return subscription_services.renewal_lines_many(subscriptions, periods)
    except Exception:
        logger.warning("Batch renewal lines failed; computing them one by one", exc_info=True)
    lines = {}
    for subscription in subscriptions:
        try:
            with transaction.atomic():
                lines[subscription.pk] = subscription_services.renewal_lines(
                    subscription, *periods[subscription.pk]
                )
        except Exception as error:
            _set_aside(report, subscription, error)
    return lines


def _cards_for(subscriptions, customers: dict) -> tuple[dict, dict]:
    """The card each subscription is charged with first (by subscription id) and the card a
    declined charge falls back to (by customer id), from one query for the batch. A customer with
    a primary namespace card is charged with it and falls back to its secondary card
    (services.primary_and_secondary_cards); anyone else with the subscription's own card, else
    the customer's default, else their newest, and without a fallback."""
    by_customer: dict = {}
    with_roles: dict = {}
    wanted = {s.customer_id for s in subscriptions}
    methods = (
        PaymentMethod.objects.filter(deleted_at__isnull=True)
        .filter(customer_id__in=wanted)
        .order_by("customer_id", "-default", "-id")
    )
    by_id = {}
    for method in methods:
        by_customer.setdefault(method.customer_id, method)
        by_id[method.pk] = method
        if method.role != PaymentMethod.Role.NORMAL:
            with_roles.setdefault(method.customer_id, []).append(method)
    primaries, fallbacks = {}, {}
    for customer_id, cards in with_roles.items():
        primary, secondary = services.primary_and_secondary_cards(
            cards, default_namespace_id=customers[customer_id].default_namespace_id
        )
        if primary is not None:
            primaries[customer_id] = primary
        if secondary is not None:
            fallbacks[customer_id] = secondary
    first = {
        s.pk: primaries.get(s.customer_id)
        or by_id.get(s.payment_method_id)
        or by_customer.get(s.customer_id)
        for s in subscriptions
    }
    return first, fallbacks


def _charge(payments: list[Payment], fallbacks: dict, at: dt.datetime) -> list[Payment]:
    """Charge the batch's claimed payments and then, once, the declined ones whose customer has
    a card to fall back to. Returns every attempt made, the fallbacks last."""
    services.payments_charge_many(payments=payments, at=at)
    declined = [
        (payment, fallbacks[payment.customer_id])
        for payment in payments
        if payment.status == Payment.Status.FAILED and payment.customer_id in fallbacks
    ]
    return payments + services.payments_charge_fallback(declined=declined, at=at)


def _unpaid_invoices(attempts: list[Payment]) -> list:
    """Ids of the invoices whose every attempt was declined."""
    paid = {p.invoice_id for p in attempts if p.status == Payment.Status.COMPLETED}
    return list(
        dict.fromkeys(
            p.invoice_id
            for p in attempts
            if p.status == Payment.Status.FAILED and p.invoice_id not in paid
        )
    )


def _declined_count(attempts: list[Payment]) -> int:
    return sum(p.status == Payment.Status.FAILED for p in attempts)


def _claim_charge(invoice, subscription, methods, payments, no_card, at) -> None:
    """Claim the first charge of a card customer's open invoice of the batch (a payment keyed by
    the invoice's id, charged after the batch commits); without a card it goes to dunning."""
    if (
        subscription.customer.billing_type != Customer.BillingType.CARD
        or invoice.status != Invoice.Status.OPEN
    ):
        return
    method = methods.get(subscription.pk)
    if method is not None:
        # Built before the count goes up: the first attempt is keyed by the invoice's id.
        payments.append(
            services.payment_build(invoice=invoice, payment_method=method, created_at=at)
        )
    else:
        no_card.append(invoice.pk)
    invoice.attempt_count = 1


def _already_invoiced(subscription_ids: list, billing_reason: str, periods: dict) -> set:
    """Which of the subscriptions already have an invoice under `billing_reason`'s uniqueness
    rule (models.same_period_reasons) for the period starting at `periods[id][0]` (one query)."""
    if not subscription_ids:
        return set()
    found = Invoice.objects.filter(
        subscription_id__in=subscription_ids,
        billing_reason__in=same_period_reasons(billing_reason),
        period_start__in={periods[pk][0] for pk in subscription_ids},
    ).values_list("subscription_id", "period_start")
    return {pk for pk, start in found if periods[pk][0] == start}


def _post_invoice_lines(subscriptions, closed: dict) -> dict:
    """The lines of the `post_invoice` items of each subscription's closed period, for their own
    invoice (API: "charged like `unit` but on its own invoice issued after the period closes"),
    keyed by subscription id; only subscriptions with such lines and without that invoice yet.
    One query for the batch finds the subscriptions that have `post_invoice` items; most have
    none and cost nothing more. A subscription whose post_invoice usage is zero has no line here
    and gets no post_invoice invoice: an invoice of nothing is not issued (its events of those
    metrics, if any, are marked with the renewal invoice's number: usage_mark_billed)."""
    with_items = usage_services.post_invoice_codes({s.pk for s in subscriptions})
    if not with_items:
        return {}
    candidates = [s for s in subscriptions if s.pk in with_items]
    invoiced = _already_invoiced([s.pk for s in candidates], POST_INVOICE_REASON, closed)
    candidates = [s for s in candidates if s.pk not in invoiced]
    if not candidates:
        return {}
    lines = usage_selectors.post_invoice_lines_many(subscriptions=candidates, periods=closed)
    return {pk: drafts for pk, drafts in lines.items() if drafts}


def _claim_due_batch(at: dt.datetime, batch_size: int, skip: set) -> list:
    return list(
        Subscription.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("customer")
        .filter(status__in=BILLABLE_STATUSES, valid_until__lte=at)
        .exclude(pk__in=skip)
        .order_by("valid_until", "id")[:batch_size]
    )


def renewals_run(*, at: dt.datetime, report: BillingRunReport, batch_size: int) -> None:
    skip: set = set()
    collisions = 0
    while True:
        try:
            with transaction.atomic():
                subscriptions = _claim_due_batch(at, batch_size, skip)
                if not subscriptions:
                    return
                payments, fallbacks, failed_without_card = _renew_batch(
                    subscriptions, at, report, skip
                )
        except IntegrityError:
            # Another run invoiced one of these periods between our claim and our insert; the
            # batch rolled back whole and is retried, now seeing those invoices.
            collisions += 1
            if collisions > MAX_BATCH_COLLISIONS:
                raise
            logger.warning("Renewal batch collided with a concurrent run; retrying it")
            continue
        attempts = _charge(payments, fallbacks, at)
        report.charges += len(attempts)
        report.charges_failed += _declined_count(attempts) + len(failed_without_card)
        dunning_after_failure(invoice_ids=_unpaid_invoices(attempts) + failed_without_card, at=at)


def _renew_batch(subscriptions, at, report, skip) -> tuple[list[Payment], dict, list]:
    """Inside the batch's transaction: invoice the next period of each claimed subscription,
    advance it, and claim the charges of card customers. Returns (payments to charge, the cards
    their customers fall back to (see _cards_for), ids of card invoices that have no card to
    charge)."""
    tenants = Tenant.objects.in_bulk({s.tenant_id for s in subscriptions})
    assemblers = {pk: services.InvoiceAssembler(tenant, at) for pk, tenant in tenants.items()}
    # Subscriptions whose cancellation has come end instead of renewing, with a final invoice of
    # their last period's usage (computed for them together, before they end).
    ending = [s for s in subscriptions if s.cancel_at and s.cancel_at <= at]
    final_drafts = _final_usage_drafts_of_batch(ending, report, skip)
    final_items: list = []
    ended: list = []
    renewable = []
    for subscription in subscriptions:
        if subscription.pk in skip:
            continue
        try:
            if subscription.cancel_at and subscription.cancel_at <= at:
                with transaction.atomic():
                    subscription_services.subscription_apply_scheduled_cancellation(
                        subscription=subscription, at=at
                    )
                    items = []
                    if subscription.pk in final_drafts:
                        items = _final_usage_assemble(
                            assemblers[subscription.tenant_id],
                            subscription,
                            final_drafts[subscription.pk],
                        )
                final_items += items
                if items:
                    ended.append(subscription)
                report.cancellations += 1
                continue
            if subscription.pending_change:
                with transaction.atomic():
                    subscription_services.subscription_apply_pending_change(
                        subscription=subscription
                    )
                subscription.refresh_from_db()
                report.changes_applied += 1
            renewable.append(subscription)
        except Exception as error:
            skip.add(subscription.pk)
            _set_aside(report, subscription, error)

    periods = {}
    for subscription in list(renewable):
        try:
            periods[subscription.pk] = billing_math.period_bounds(
                subscription.anchor, subscription.schedule, subscription.period_index + 1
            )
        except (ValueError, TypeError) as error:
            skip.add(subscription.pk)
            renewable.remove(subscription)
            _set_aside(report, subscription, error)
    already = _already_invoiced([s.pk for s in renewable], "renewal", periods)
    lines = _renewal_lines(renewable, periods, report)
    # Usage of the period that just closed is billed in arrears on the same invoice, but for the
    # `post_invoice` items': those go on an invoice of their own for the closed period.
    closed = {s.pk: (s.current_period_start, s.valid_until) for s in renewable}
    usage_lines = usage_selectors.usage_lines_many(
        subscriptions=renewable, periods=closed, include_post_invoice=False
    )
    post_lines = _post_invoice_lines(renewable, closed)
    # Commitments of metered items are billed in advance for the new period.
    commit_lines = usage_selectors.commit_lines_many(subscriptions=renewable, periods=periods)
    pending = services.pending_lines_for_update(s.pk for s in renewable)
    voucher_customers = _customers_with_vouchers({s.customer_id for s in renewable})
    methods, fallbacks = _cards_for(
        renewable + ended, {s.customer_id: s.customer for s in [*renewable, *ended]}
    )

    assembled_by_tenant: dict = {}
    post_by_tenant: dict = {}
    advanced, payments, no_card, renewed_events = [], [], [], {}
    for subscription in renewable:
        if subscription.pk not in lines:
            skip.add(subscription.pk)
            continue
        start, end = periods[subscription.pk]
        item = post_item = None
        try:
            # The post_invoice invoice first: it has no side effects (the renewal consumes
            # vouchers), so a failure here sets the subscription aside with nothing consumed.
            if subscription.pk in post_lines:
                post_item = assemblers[subscription.tenant_id].assemble(
                    customer=subscription.customer,
                    currency=subscription.currency,
                    drafts=post_lines[subscription.pk],
                    subscription=subscription,
                    period_start=closed[subscription.pk][0],
                    period_end=closed[subscription.pk][1],
                    billing_reason=POST_INVOICE_REASON,
                )
            if subscription.pk not in already:
                vouchers = []
                if subscription.customer_id in voucher_customers:
                    with transaction.atomic():
                        vouchers = services._voucher_lines(
                            subscription.customer, subscription.currency
                        )
                item = assemblers[subscription.tenant_id].assemble(
                    customer=subscription.customer,
                    currency=subscription.currency,
                    drafts=[
                        *lines[subscription.pk],
                        *usage_lines.get(subscription.pk, []),
                        *commit_lines.get(subscription.pk, []),
                    ],
                    pending_lines=pending.get(subscription.pk, []),
                    vouchers=vouchers,
                    subscription=subscription,
                    period_start=start,
                    period_end=end,
                    billing_reason="renewal",
                )
        except Exception as error:
            skip.add(subscription.pk)
            _set_aside(report, subscription, error)
            continue
        if item is not None:
            _claim_charge(item.invoice, subscription, methods, payments, no_card, at)
            assembled_by_tenant.setdefault(subscription.tenant_id, []).append(item)
        if post_item is not None:
            # Charged like the renewal invoice: same card, its own payment and dunning.
            _claim_charge(post_item.invoice, subscription, methods, payments, no_card, at)
            post_by_tenant.setdefault(subscription.tenant_id, []).append(post_item)
        subscription.period_index += 1
        subscription.current_period_start, subscription.valid_until = start, end
        subscription.updated_at = at
        advanced.append(subscription)
        renewed_events.setdefault(subscription.tenant_id, []).append(
            (
                "subscription.renewed",
                {
                    "id": subscription.pk,
                    "customer": subscription.customer_id,
                    "current_period_start": start,
                    "valid_until": end,
                    "period_index": subscription.period_index,
                },
            )
        )

    # The final invoices of the subscriptions that ended: charged like the renewal invoices.
    ended_by_pk = {s.pk: s for s in ended}
    final_by_tenant: dict = {}
    for item in final_items:
        subscription = ended_by_pk[item.invoice.subscription_id]
        _claim_charge(item.invoice, subscription, methods, payments, no_card, at)
        final_by_tenant.setdefault(subscription.tenant_id, []).append(item)

    # Everything that needs no invoice number first; the invoices' foreign keys (lines,
    # payments) are checked at commit.
    services.invoice_lines_persist(
        assembled=[
            item
            for by_tenant in (assembled_by_tenant, post_by_tenant, final_by_tenant)
            for assembled in by_tenant.values()
            for item in assembled
        ]
    )
    fast_insert(Payment, payments)
    rows_update(
        Subscription,
        advanced,
        ["period_index", "current_period_start", "valid_until", "updated_at"],
    )
    for tenant_id, events in renewed_events.items():
        emit_many(tenant=tenants[tenant_id], events=events)
    # Last, the numbers: the tenant's sequence stays locked from here until the batch commits,
    # and other runs wait for it, so only the invoices, their events and their usage follow.
    # A tenant's post_invoice invoices are numbered right after its renewal invoices of the
    # batch, in the same numbering (one per tenant and batch, however many invoices).
    invoices = 0
    for tenant_id in dict.fromkeys([*assembled_by_tenant, *post_by_tenant, *final_by_tenant]):
        assembled = (
            assembled_by_tenant.get(tenant_id, [])
            + post_by_tenant.get(tenant_id, [])
            + final_by_tenant.get(tenant_id, [])
        )
        invoices += len(
            services.invoices_number_and_save(tenant=tenants[tenant_id], assembled=assembled)
        )
    # The usage just invoiced is marked with its invoice number, in this transaction, while the
    # subscriptions are held FOR UPDATE (ingestion cannot commit in between: USAGE); the events
    # of post_invoice items with the number of their own invoice.
    usage_services.usage_mark_billed(
        invoice_numbers_by_sub={
            item.invoice.subscription_id: item.invoice.number
            for assembled in assembled_by_tenant.values()
            for item in assembled
        },
        periods=closed,
        post_invoice_numbers_by_sub={
            item.invoice.subscription_id: item.invoice.number
            for assembled in post_by_tenant.values()
            for item in assembled
        },
    )
    _final_usage_mark_billed(final_items, final_drafts)
    report.invoices += invoices
    report.renewals += len(advanced)
    return payments, fallbacks, no_card


# --- Final usage invoices of subscriptions that end -------------------------------------------


@dataclass
class FinalUsageCharges:
    """What final_usage_invoices_issue leaves to charge after its transaction commits."""

    invoices: list = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    fallbacks: dict = field(default_factory=dict)
    no_card: list = field(default_factory=list)


def _final_usage_drafts(subscriptions, ends: dict) -> dict:
    """The unbilled usage of the last period of subscriptions that end (or ended) at `ends[id]`:
    `{id: ((period_start, end), usage drafts, post_invoice drafts)}`, only for subscriptions with
    something to bill that is not invoiced yet. The period is the subscription's current period
    cut at the end moment; lines are computed exactly as the renewal's arrears lines (calc
    rules, late events of earlier periods included). One query for the whole list finds the
    subscriptions with metered items (usage_lines_many) and one those with `post_invoice` items
    (_post_invoice_lines); subscriptions without any cost nothing more."""
    if not subscriptions:
        return {}
    periods = {}
    for s in subscriptions:
        start = s.current_period_start or ends[s.pk]
        periods[s.pk] = (start, max(ends[s.pk], start))
    usage = {
        pk: drafts
        for pk, drafts in usage_selectors.usage_lines_many(
            subscriptions=subscriptions, periods=periods, include_post_invoice=False
        ).items()
        if drafts
    }
    if usage:
        invoiced = _already_invoiced(list(usage), FINAL_USAGE_REASON, periods)
        usage = {pk: d for pk, d in usage.items() if pk not in invoiced}
    post = _post_invoice_lines(subscriptions, periods)
    return {
        pk: (periods[pk], usage.get(pk, []), post.get(pk, []))
        for pk in dict.fromkeys([*usage, *post])
    }


def _final_usage_drafts_of_batch(ending, report, skip) -> dict:
    """_final_usage_drafts for the batch's ending subscriptions; when that fails, one by one, and
    the one at fault is set aside (it stays uncancelled until a later run can bill it)."""
    if not ending:
        return {}
    try:
        with transaction.atomic():
            return _final_usage_drafts(ending, {s.pk: s.cancel_at for s in ending})
    except Exception:
        logger.warning("Batch final usage lines failed; computing them one by one", exc_info=True)
    drafts = {}
    for subscription in ending:
        try:
            with transaction.atomic():
                drafts.update(
                    _final_usage_drafts([subscription], {subscription.pk: subscription.cancel_at})
                )
        except Exception as error:
            skip.add(subscription.pk)
            _set_aside(report, subscription, error)
    return drafts


def _final_usage_assemble(assembler, subscription, drafts) -> list:
    """The final invoice (billing_reason final_usage) of the usage drafts and, like the renewal
    path, a post_invoice invoice of its own for the `post_invoice` items' drafts; both for the
    last period cut at the end moment. No vouchers and no pending prorations: those belong to
    period invoices, and the fixed fee was billed (and is refunded) as before."""
    (start, end), usage, post = drafts
    common = {
        "customer": subscription.customer,
        "currency": subscription.currency,
        "subscription": subscription,
        "period_start": start,
        "period_end": end,
    }
    items = []
    if usage:
        items.append(assembler.assemble(drafts=usage, billing_reason=FINAL_USAGE_REASON, **common))
    if post:
        items.append(assembler.assemble(drafts=post, billing_reason=POST_INVOICE_REASON, **common))
    return items


def _final_usage_mark_billed(items, drafts: dict) -> None:
    """Mark the events the final invoices were computed from with their numbers (post_invoice
    items' events with their own invoice's number), as usage_mark_billed does for renewals."""
    if not items:
        return
    usage_services.usage_mark_billed(
        invoice_numbers_by_sub={
            item.invoice.subscription_id: item.invoice.number
            for item in items
            if item.invoice.billing_reason == FINAL_USAGE_REASON
        },
        periods={pk: period for pk, (period, _, _) in drafts.items()},
        post_invoice_numbers_by_sub={
            item.invoice.subscription_id: item.invoice.number
            for item in items
            if item.invoice.billing_reason == POST_INVOICE_REASON
        },
    )


def final_usage_invoices_issue(*, subscriptions, at: dt.datetime) -> FinalUsageCharges:
    """Issue the final invoices of subscriptions that have just ended (status cancelled, ended_at
    set) instead of renewing: the unbilled usage of the last period up to `ended_at`.

    Call inside the transaction that ended them, while they are held FOR UPDATE (ingestion cannot
    add events in between), and charge what it returns with final_usage_invoices_charge after
    that transaction commits (the gateway call is a network call).

    One invoice with billing_reason `final_usage` carries the metered items' lines; the
    `post_invoice` items' lines go on a `post_invoice` invoice of their own for the same period,
    exactly as the renewal path does, so the API's rule for that calc rule holds whichever way a
    period closes. No usage: no invoice. Exactly once: the database allows one `final_usage` and
    one `post_invoice` invoice per subscription period (invoice_one_final_usage_per_period,
    invoice_one_post_invoice_per_period), and what is already invoiced is left out."""
    result = FinalUsageCharges()
    subscriptions = [s for s in subscriptions if s.ended_at is not None]
    drafts = _final_usage_drafts(subscriptions, {s.pk: s.ended_at for s in subscriptions})
    if not drafts:
        return result
    ending = [s for s in subscriptions if s.pk in drafts]
    tenants = Tenant.objects.in_bulk({s.tenant_id for s in ending})
    assemblers = {pk: services.InvoiceAssembler(tenant, at) for pk, tenant in tenants.items()}
    methods, result.fallbacks = _cards_for(ending, {s.customer_id: s.customer for s in ending})
    by_tenant: dict = {}
    items = []
    for subscription in ending:
        for item in _final_usage_assemble(
            assemblers[subscription.tenant_id], subscription, drafts[subscription.pk]
        ):
            _claim_charge(item.invoice, subscription, methods, result.payments, result.no_card, at)
            by_tenant.setdefault(subscription.tenant_id, []).append(item)
            items.append(item)
    services.invoice_lines_persist(assembled=items)
    fast_insert(Payment, result.payments)
    for tenant_id, assembled in by_tenant.items():
        result.invoices += services.invoices_number_and_save(
            tenant=tenants[tenant_id], assembled=assembled
        )
    _final_usage_mark_billed(items, drafts)
    return result


def final_usage_invoices_charge(charges: FinalUsageCharges, *, at: dt.datetime) -> list[Payment]:
    """After the transaction of final_usage_invoices_issue committed: charge the card customers'
    final invoices as renewals are charged (their secondary card after a decline, then dunning).
    Returns every attempt made."""
    attempts = _charge(charges.payments, charges.fallbacks, at)
    dunning_after_failure(invoice_ids=_unpaid_invoices(attempts) + charges.no_card, at=at)
    return attempts


def _customers_with_vouchers(customer_ids: set) -> set:
    from subscriptions.models import VoucherRedemption

    return set(
        VoucherRedemption.objects.filter(customer_id__in=customer_ids, active=True).values_list(
            "customer_id", flat=True
        )
    )


# --- Dunning ---------------------------------------------------------------------------------


def dunning_after_failure(*, invoice_ids: list, at: dt.datetime) -> None:
    """After failed charges of subscription invoices: schedule the next retry per the tenant's
    `dunning_retry_days` (days after the invoice was finalised) and put the subscription in
    overdue_payment_open; when the retries are used up, disable or cancel it per
    `dunning_final_action`."""
    if not invoice_ids:
        return
    invoices = Invoice.objects.filter(
        pk__in=invoice_ids, status=Invoice.Status.OPEN, subscription__isnull=False
    ).select_related("tenant", "subscription")
    for invoice in invoices:
        retry_days = list(invoice.tenant.dunning_retry_days or [])
        # attempt_count counts the first charge too: attempt k failed -> retry k is next.
        retries_done = max(invoice.attempt_count - 1, 0)
        with transaction.atomic():
            if retries_done < len(retry_days):
                base = invoice.finalised_at or at
                invoice.next_attempt_at = base + dt.timedelta(days=int(retry_days[retries_done]))
                invoice.save(update_fields=["next_attempt_at"])
                if invoice.subscription.status in ("active", "pending_cancel"):
                    subscription_services.subscription_set_overdue(
                        subscription=invoice.subscription
                    )
            else:
                invoice.next_attempt_at = None
                invoice.save(update_fields=["next_attempt_at"])
                _dunning_final_action(invoice, at)


def _dunning_final_action(invoice: Invoice, at: dt.datetime) -> None:
    subscription = invoice.subscription
    if invoice.tenant.dunning_final_action == "cancel":
        subscription_services.subscription_cancel_for_nonpayment(subscription=subscription, at=at)
    else:
        subscription_services.subscription_disable_for_nonpayment(subscription=subscription)


def dunning_run(*, at: dt.datetime, report: BillingRunReport, batch_size: int) -> None:
    """Retry the charges that are due, claiming each invoice's retry under SKIP LOCKED."""
    while True:
        with transaction.atomic():
            invoices = list(
                Invoice.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("subscription", "customer")
                .filter(
                    status=Invoice.Status.OPEN,
                    next_attempt_at__isnull=False,
                    next_attempt_at__lte=at,
                )
                .order_by("next_attempt_at", "id")[:batch_size]
            )
            if not invoices:
                return
            methods, fallbacks = _cards_for(
                [i.subscription for i in invoices], {i.customer_id: i.customer for i in invoices}
            )
            payments, no_card = [], []
            for invoice in invoices:
                invoice.next_attempt_at = None
                method = methods.get(invoice.subscription_id)
                if method is None:
                    invoice.attempt_count += 1
                    invoice.save(update_fields=["next_attempt_at", "attempt_count"])
                    no_card.append(invoice.pk)
                    continue
                invoice.save(update_fields=["next_attempt_at"])
                payments.append(services.payment_claim(invoice=invoice, payment_method=method))
        report.dunning_retries += len(invoices)
        attempts = _charge(payments, fallbacks, at)
        for payment in attempts:
            if payment.status == Payment.Status.COMPLETED:
                subscription_services.subscription_payment_recovered(
                    subscription=payment.invoice.subscription
                )
        report.charges_failed += _declined_count(attempts) + len(no_card)
        dunning_after_failure(invoice_ids=_unpaid_invoices(attempts) + no_card, at=at)
