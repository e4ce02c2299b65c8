from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CommonConfig(AppConfig):
    """The ground floor: no models, but admin templates and management commands."""

    name = "common"
    default = True

    def ready(self) -> None:
        from django.core.signals import request_started

        from common.connections import drop_closed_connections

        request_started.connect(drop_closed_connections, dispatch_uid="drop_closed_connections")


class ServiceAdminConfig(admin_apps.AdminConfig):
    """Django's admin with this service's site (`common.admin.ServiceAdminSite`)."""

    default = False
    default_site = "common.admin.ServiceAdminSite"
