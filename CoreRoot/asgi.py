"""ASGI entry point (e.g. uvicorn). The service is synchronous; WSGI is the default."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "CoreRoot.settings")

application = get_asgi_application()
