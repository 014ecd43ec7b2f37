from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Quotas bind at ingestion through usage's extension point (usage never imports quotas).
        from quotas.services import ingestion_guard
        from usage import services as usage_services

        if ingestion_guard not in usage_services.INGESTION_GUARDS:
            usage_services.INGESTION_GUARDS.append(ingestion_guard)
