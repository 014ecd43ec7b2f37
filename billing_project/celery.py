"""The Celery application: tasks are discovered in each app's `tasks.py`; beat reads its schedule
from the database (django-celery-beat), seeded with `billing_project.schedule.DEFAULT_SCHEDULE`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
