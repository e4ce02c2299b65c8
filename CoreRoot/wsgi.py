"""WSGI entry point: `gunicorn CoreRoot.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "CoreRoot.settings")

application = get_wsgi_application()
