import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from rest_framework.exceptions import APIException, ValidationError

from invoicing import pdf, selectors, services
from invoicing.models import Invoice, InvoiceLine, Payment, PaymentMethod, Refund
from tenants.admin_base import TenantScopedAdmin


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = [
        "description",
        "kind",
        "quantity",
        "unit_price",
        "sub_total",
        "tax_rate",
        "tax_total",
        "total",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _error_text(error: APIException) -> str:
    detail = error.detail
    if isinstance(detail, dict):
        return "; ".join(str(m) for messages_ in detail.values() for m in messages_)
    return str(detail)


@admin.register(Invoice)
class InvoiceAdmin(TenantScopedAdmin):
    list_display = [
        "number",
        "customer",
        "status",
        "total",
        "currency",
        "billing_reason",
        "finalised_at",
        "due_date",
        "tenant",
    ]
    list_filter = ["status", "billing_reason", "tenant"]
    search_fields = ["number", "customer__email", "id"]
    list_select_related = ["customer", "tenant"]
    inlines = [InvoiceLineInline]
    actions = ["void_invoices", "mark_invoices_paid", "download_pdf"]
    # Issued invoices are immutable documents: corrections are new documents.
    readonly_fields = [f.name for f in Invoice._meta.fields]

    change_list_template = "admin/invoicing/invoice/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        revenue = path(
            "revenue/",
            self.admin_site.admin_view(self.revenue_view),
            name="invoicing_invoice_revenue",
        )
        return [revenue, *super().get_urls()]

    def revenue_view(self, request):
        """Revenue of the last twelve months: paid invoices per month and currency, of the
        tenants the staff member may see."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        since = (timezone.now() - dt.timedelta(days=366)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        months = selectors.monthly_revenue(invoices=self.get_queryset(request), since=since)
        largest = max((m.total for m in months), default=0) or 1
        return TemplateResponse(
            request,
            "admin/invoicing/invoice/revenue.html",
            {
                **self.admin_site.each_context(request),
                "title": "Revenue",
                "opts": self.model._meta,
                "months": [(m, round(100 * m.total / largest)) for m in months],
            },
        )

    def _each(self, request, queryset, service, done: str):
        count = 0
        for invoice in queryset:
            try:
                service(invoice=invoice)
                count += 1
            except APIException as error:
                self.message_user(request, f"{invoice}: {_error_text(error)}", messages.ERROR)
        self.message_user(request, f"{count} invoice(s) {done}.")

    @admin.action(description="Void selected invoices")
    def void_invoices(self, request, queryset):
        self._each(request, queryset, services.invoice_void, "voided")

    @admin.action(description="Mark selected invoices paid")
    def mark_invoices_paid(self, request, queryset):
        self._each(request, queryset, services.invoice_mark_paid, "marked paid")

    @admin.action(description="Download PDF (first selected invoice)")
    def download_pdf(self, request, queryset):
        invoice = queryset.first()
        response = HttpResponse(pdf.invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response


@admin.register(Payment)
class PaymentAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "customer",
        "amount",
        "refunded_amount",
        "currency",
        "status",
        "failure_reason",
        "created_at",
        "tenant",
    ]
    list_filter = ["status", "failure_reason", "tenant"]
    search_fields = ["id", "customer__email", "invoice__number", "external_reference"]
    list_select_related = ["customer", "tenant"]
    readonly_fields = [f.name for f in Payment._meta.fields]
    actions = ["refund_payments"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Refund selected payments…")
    def refund_payments(self, request, queryset):
        """Ask for the amount and reason first (an intermediate page), then refund each payment
        through the refund service, which never refunds more than is left."""
        if "apply" in request.POST:
            form = RefundForm(request.POST)
            if form.is_valid():
                for payment in queryset:
                    amount = form.cleaned_data["amount"] or services.payment_refundable_amount(
                        payment
                    )
                    try:
                        services.refund_create(
                            payment=payment,
                            amount=amount,
                            reason=form.cleaned_data["reason"] or "Refunded by staff",
                            billing_admin=request.user.get_username(),
                        )
                        self.message_user(
                            request, f"Refunded {amount} {payment.currency} of {payment.pk}."
                        )
                    except ValidationError as error:
                        self.message_user(
                            request, f"{payment.pk}: {_error_text(error)}", messages.ERROR
                        )
                return None
        else:
            form = RefundForm()
        return TemplateResponse(
            request,
            "admin/invoicing/payment/refund.html",
            {
                **self.admin_site.each_context(request),
                "title": "Refund payments",
                "opts": self.model._meta,
                "payments": queryset,
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


class RefundForm(forms.Form):
    amount = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="In the currency's minor units (1818 = 18.18 EUR). Empty refunds all that is "
        "left of each payment.",
    )
    reason = forms.CharField(max_length=255, required=False)


@admin.register(Refund)
class RefundAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "payment",
        "customer",
        "amount",
        "currency",
        "status",
        "billing_admin",
        "created_at",
        "tenant",
    ]
    list_filter = ["status", "tenant"]
    search_fields = ["id", "customer__email", "payment__id"]
    readonly_fields = [f.name for f in Refund._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentMethod)
class PaymentMethodAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "customer",
        "brand",
        "last_four",
        "default",
        "role",
        "deleted_at",
        "tenant",
    ]
    list_filter = ["brand", "role", "default", "tenant"]
    search_fields = ["customer__email", "last_four", "id"]
    exclude = ["gateway_reference"]
    readonly_fields = [
        "customer",
        "brand",
        "last_four",
        "expiry_month",
        "expiry_year",
        "deleted_at",
        "namespace",
        "contact",
    ]

    def has_add_permission(self, request):
        return False
