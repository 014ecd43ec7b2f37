"""Writes for customers and namespaces. Each function owns its transaction and emits its event."""

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from customers.models import Customer, Namespace
from tenants.api.errors import Conflict
from webhooks.services import emit

CUSTOMER_FIELDS = frozenset(
    f.name
    for f in Customer._meta.get_fields()
    if f.concrete
    and f.name not in {"id", "tenant", "created_at", "updated_at", "default_namespace"}
)


def default_namespace_name(customer: Customer) -> str:
    return f"c-{customer.id.hex[-12:]}"


def _customer_event_data(customer: Customer) -> dict:
    from customers.api.serializers import CustomerSerializer

    return CustomerSerializer(customer).data


def _raise_on_duplicate(exc: IntegrityError, *, tenant, email: str | None, namespace: str | None):
    if email and Customer.objects.for_tenant(tenant).filter(email__iexact=email).exists():
        raise ValidationError({"email": ["email is already used by another customer"]}) from exc
    if namespace and Namespace.objects.for_tenant(tenant).filter(name=namespace).exists():
        raise ValidationError({"namespace": ["namespace name is already taken"]}) from exc
    raise exc


def customer_create(*, tenant, namespace_name: str | None = None, **fields) -> Customer:
    unknown = set(fields) - CUSTOMER_FIELDS
    if unknown:
        raise TypeError(f"Unknown customer fields: {sorted(unknown)}")
    try:
        with transaction.atomic():
            customer = Customer.objects.create(tenant=tenant, **fields)
            namespace = Namespace.objects.create(
                tenant=tenant,
                customer=customer,
                name=namespace_name or default_namespace_name(customer),
                description=f"Default namespace of {customer.email}",
            )
            customer.default_namespace = namespace
            customer.save(update_fields=["default_namespace"])
            emit(tenant=tenant, event_type="customer.created", data=_customer_event_data(customer))
    except IntegrityError as exc:
        _raise_on_duplicate(exc, tenant=tenant, email=fields.get("email"), namespace=namespace_name)
    return customer


def customer_update(*, customer: Customer, **fields) -> Customer:
    unknown = set(fields) - CUSTOMER_FIELDS
    if unknown:
        raise TypeError(f"Unknown customer fields: {sorted(unknown)}")
    try:
        with transaction.atomic():
            for name, value in fields.items():
                setattr(customer, name, value)
            customer.updated_at = timezone.now()
            customer.save(update_fields=[*fields, "updated_at"])
            emit(
                tenant=customer.tenant,
                event_type="customer.updated",
                data=_customer_event_data(customer),
            )
    except IntegrityError as exc:
        _raise_on_duplicate(exc, tenant=customer.tenant, email=fields.get("email"), namespace=None)
    return customer


def _customer_set_status(*, customer: Customer, status: str, event_type: str) -> Customer:
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        if locked.status != status:
            locked.status = status
            locked.updated_at = timezone.now()
            locked.save(update_fields=["status", "updated_at"])
            emit(tenant=locked.tenant, event_type=event_type, data=_customer_event_data(locked))
    customer.status, customer.updated_at = locked.status, locked.updated_at
    return customer


def customer_disable(*, customer: Customer) -> Customer:
    return _customer_set_status(
        customer=customer, status=Customer.Status.DISABLED, event_type="customer.disabled"
    )


def customer_enable(*, customer: Customer) -> Customer:
    return _customer_set_status(
        customer=customer, status=Customer.Status.ACTIVE, event_type="customer.enabled"
    )


def namespace_create(
    *, tenant, customer: Customer, name: str, description: str = "", labels: dict | None = None
) -> Namespace:
    try:
        with transaction.atomic():
            return Namespace.objects.create(
                tenant=tenant,
                customer=customer,
                name=name,
                description=description,
                labels=labels or {},
            )
    except IntegrityError as exc:
        # Here the request's field is `name` (on customer create it is `namespace`).
        if Namespace.objects.for_tenant(tenant).filter(name=name).exists():
            raise ValidationError({"name": ["name is already taken"]}) from exc
        raise


def namespace_update(*, namespace: Namespace, **fields) -> Namespace:
    allowed = {"description", "labels"}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"Namespaces allow updating only {sorted(allowed)}")
    for name, value in fields.items():
        setattr(namespace, name, value)
    namespace.updated_at = timezone.now()
    namespace.save(update_fields=[*fields, "updated_at"])
    return namespace


def namespace_delete(*, namespace: Namespace) -> None:
    if namespace.customer.default_namespace_id == namespace.id:
        raise Conflict("A customer's default namespace cannot be deleted.")
    try:
        with transaction.atomic():
            namespace.delete()
    except ProtectedError:
        raise Conflict(
            "The namespace has usage recorded against it and cannot be deleted."
        ) from None
