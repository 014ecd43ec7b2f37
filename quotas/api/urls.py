from django.urls import path

from quotas.api import views

ns = "namespaces/<str:ns>"
payment_method = f"{ns}/billing/payment_method/<str:name>"

urlpatterns = [
    path(f"{ns}/quotas", views.QuotaListView.as_view(), name="quota-list"),
    path(f"{ns}/quotas/<str:name>", views.QuotaDetailView.as_view(), name="quota-detail"),
    path(f"{ns}/quota/limits", views.QuotaLimitsView.as_view(), name="quota-limits"),
    path(f"{ns}/quota/usage", views.QuotaUsageView.as_view(), name="quota-usage"),
    path(f"{ns}/current_usage", views.CurrentUsageView.as_view(), name="namespace-current-usage"),
    path(f"{ns}/usage_details", views.UsageDetailsView.as_view(), name="namespace-usage-details"),
    path(
        f"{ns}/hourly_usage_details",
        views.HourlyUsageDetailsView.as_view(),
        name="namespace-hourly-usage-details",
    ),
    path(f"{ns}/monthly_usage", views.MonthlyUsageView.as_view(), name="namespace-monthly-usage"),
    path("usage_summary", views.UsageSummaryView.as_view(), name="usage-summary"),
    path("usage_plans", views.UsagePlansView.as_view(), name="usage-plans"),
    path(
        f"{ns}/usage_plans/current",
        views.CurrentUsagePlanView.as_view(),
        name="namespace-usage-plan-current",
    ),
    path(
        f"{ns}/billing/plan_transition",
        views.PlanTransitionCreateView.as_view(),
        name="namespace-plan-transition",
    ),
    path(
        "plan_transitions/<uuid:transition_id>",
        views.PlanTransitionDetailView.as_view(),
        name="plan-transition-detail",
    ),
    path(
        "no_auth/plan_transition",
        views.NoAuthPlanTransitionView.as_view(),
        name="no-auth-plan-transition",
    ),
    path(
        f"{ns}/billing/payment_methods",
        views.NamespacePaymentMethodsView.as_view(),
        name="namespace-payment-methods",
    ),
    path(
        f"{ns}/billing/payment_methods/<str:name>",
        views.NamespacePaymentMethodDeleteView.as_view(),
        name="namespace-payment-method-delete",
    ),
    path(f"{payment_method}/primary", views.MakePrimaryView.as_view(), name="pm-primary"),
    path(f"{payment_method}/secondary", views.MakeSecondaryView.as_view(), name="pm-secondary"),
    path(f"{payment_method}/swap-primary", views.SwapPrimaryView.as_view(), name="pm-swap"),
    path(f"{ns}/addon/subscribe", views.AddonSubscribeView.as_view(), name="addon-subscribe"),
    path(f"{ns}/addon/unsubscribe", views.AddonUnsubscribeView.as_view(), name="addon-unsubscribe"),
    path(
        f"{ns}/usage/invoices/custom_list",
        views.NamespaceInvoicesView.as_view(),
        name="namespace-invoices",
    ),
    path(f"{ns}/usage/invoice_pdf", views.NamespaceInvoicePdfView.as_view(), name="namespace-pdf"),
    path(
        f"{ns}/subscriptions/custom_list",
        views.NamespaceSubscriptionsView.as_view(),
        name="namespace-subscriptions",
    ),
]
