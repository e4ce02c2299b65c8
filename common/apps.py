from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CommonConfig(AppConfig):
    """The ground floor: no models, but admin templates and management commands."""

    name = "common"
    default = True


class ServiceAdminConfig(admin_apps.AdminConfig):
    """Django's admin with this service's site (`common.admin.ServiceAdminSite`)."""

    default = False
    default_site = "common.admin.ServiceAdminSite"
