from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _seed_beat_schedule(sender, **kwargs):
    from billing_project.schedule import ensure_default_schedule

    ensure_default_schedule()


class TenantsConfig(AppConfig):
    name = "tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from tenants.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        post_migrate.connect(_seed_beat_schedule, sender=self)
