"""What every admin page of the service shares: the site and its dashboard, money shown in
its currency, short ids, read-only ledgers, and deletions refused for a reason.

    @admin.register(Payment)
    class PaymentAdmin(ReadOnlyModelAdmin):          # a ledger: view only, no Save
        list_display = (short_id("id"), money("amount"), "status")

    class CartAdmin(ServiceModelAdmin):
        delete_service = staticmethod(lambda obj: cart_delete(cart=obj))

    admin.site.add_panel(payments_panel)              # a box on the index

A model's own deletion rule (`check_deletable()`, raising an `ApplicationError` that says
why) is asked before Django's confirmation page, and a refusal is shown as that reason;
the deletion itself goes through `delete_service` (the same function any other door
calls). Help texts lose their Markdown backticks here (they keep them in the API docs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from common import money as money_rules
from common.api import MalformedJSON, read_json
from common.errors import ApplicationError
from common.fields import AmountField, is_ascii_number, is_plain_number

# --- Display helpers ---------------------------------------------------------------------


def format_money(amount: Decimal | None, currency: str) -> str:
    """'20.00 USD', '1500 JPY': the currency's decimals and its code, as the API shows it."""
    return "-" if amount is None else money_rules.format_amount(amount, currency)


def money(field: str, *, currency: str = "currency", label: str | None = None) -> Callable:
    """A list or detail column showing `field` in the object's `currency`."""

    def display(obj) -> str:
        return format_money(getattr(obj, field), getattr(obj, currency))

    display.__name__ = f"{field}_money"
    display.short_description = label or field.replace("_", " ").capitalize()
    display.admin_order_field = field
    display.model_field = field  # its help text is the model field's
    return display


def short_id(field: str = "id", *, label: str = "ID") -> Callable:
    """A UUID cut to its first 8 characters (the full one on hover, and searchable)."""

    def display(obj) -> str:
        value = getattr(obj, field)
        if value is None:
            return "-"
        full = str(value)
        return format_html('<span class="short-id" title="{}">{}</span>', full, full[:8])

    display.__name__ = f"{field.replace('__', '_')}_short"
    display.short_description = label
    display.admin_order_field = field
    return display


def plain_text(help_text) -> str:
    """Help text without Markdown code marks: `currency` -> currency."""
    return str(help_text).replace("`", "")


class AmountFormField(forms.DecimalField):
    """An amount input showing 5 or 12.5, not the column's 5.0000 or 12.5000, and reading
    what the API reads (`is_plain_number`): Decimal() alone takes "١٢" or "1_000"."""

    def to_python(self, value):
        if isinstance(value, str) and value and not is_plain_number(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)

    def prepare_value(self, value):
        if isinstance(value, Decimal) and value.is_finite():
            return f"{value.normalize():f}"
        return value


class WholeNumberFormField(forms.IntegerField):
    """A whole number input reading what the API reads (`is_ascii_number`): int() alone
    takes "١٢" or "１２" as 12."""

    def to_python(self, value):
        if isinstance(value, str) and not is_ascii_number(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class JSONFormField(forms.JSONField):
    """JSON typed into a form, read by the API's rules (`common.api.read_json`): text it
    refuses, such as brackets nested 2,000 deep (a RecursionError in json.loads) or a
    5,000-digit number (past int()'s limit), is a form error saying why, not a 500."""

    def to_python(self, value):
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            converted = read_json(value, fraction=float)
        except MalformedJSON as exc:
            raise ValidationError(str(exc), code="invalid") from None
        return forms.fields.JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        # The form shown again with its errors reads the typed text once more.
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return read_json(data, fraction=float)
        except MalformedJSON:
            return forms.fields.InvalidJSONInput(data)


def adopt(instance: models.Model, saved: models.Model) -> None:
    """Make the admin form's instance the row a service saved, so the admin logs,
    messages and redirects with it."""
    for model_field in instance._meta.concrete_fields:
        setattr(instance, model_field.attname, getattr(saved, model_field.attname))
    instance._state.adding = False
    instance._state.db = saved._state.db


# --- Model admins ------------------------------------------------------------------------


class ServiceModelAdmin(admin.ModelAdmin):
    """Base of every admin in the service (see the module docstring)."""

    #: Deletes one object through the service every door uses (None: `obj.delete()`).
    delete_service: Callable[[models.Model], None] | None = None
    formfield_overrides = {
        AmountField: {"form_class": AmountFormField},
        models.JSONField: {"form_class": JSONFormField},
        # Every integer column: the others (PositiveIntegerField…) subclass IntegerField,
        # but BigIntegerField has an entry of its own in the admin's defaults.
        models.IntegerField: {"form_class": WholeNumberFormField},
        models.BigIntegerField: {"form_class": WholeNumberFormField},
    }

    def get_form(self, request, obj=None, change=False, **kwargs):
        help_texts = {
            f.name: plain_text(f.help_text)
            for f in self.model._meta.get_fields()
            if getattr(f, "help_text", "")
        }
        for name in self.get_readonly_fields(request, obj):
            source = getattr(name, "model_field", None)
            if source and source in help_texts:
                help_texts[name.__name__] = help_texts[source]
        kwargs["help_texts"] = {**help_texts, **kwargs.get("help_texts", {})}
        return super().get_form(request, obj, change, **kwargs)

    # Deletion: the model's rule first, with its reason; then the service.

    def refusal(self, obj) -> str | None:
        """Why `obj` cannot be deleted, or None."""
        check = getattr(obj, "check_deletable", None)
        if check is None:
            return None
        try:
            check()
        except ApplicationError as exc:
            return exc.message
        return None

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        reason = obj is not None and self.refusal(obj)
        if reason:
            self.message_user(request, f"“{obj}” cannot be deleted: {reason}", messages.ERROR)
            opts = self.model._meta
            url = reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
            return HttpResponseRedirect(url)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        if self.delete_service is None:
            return super().delete_model(request, obj)
        self.delete_service(obj)

    def delete_queryset(self, request, queryset):
        if self.delete_service is None:
            return super().delete_queryset(request, queryset)
        for obj in queryset:
            self.delete_service(obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (_delete_selected_if_allowed, name, description)
        return actions

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The form ran the model's rules; the service runs them again under a row lock.
        # If a concurrent change broke one in between, nothing is saved: say so.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ValidationError, ApplicationError) as exc:
            reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else exc.message
            self.message_user(request, f"Nothing was saved: {reason}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def _delete_selected_if_allowed(modeladmin: ServiceModelAdmin, request, queryset):
    refused = [(obj, modeladmin.refusal(obj)) for obj in queryset]
    refused = [(obj, reason) for obj, reason in refused if reason]
    if refused:
        for obj, reason in refused:
            modeladmin.message_user(
                request, f"“{obj}” cannot be deleted: {reason}", messages.ERROR
            )
        return None  # back to the list, nothing deleted
    return delete_selected(modeladmin, request, queryset)


class ReadOnlyModelAdmin(ServiceModelAdmin):
    """A ledger: listed, searched and viewed, never added, changed or deleted by hand.
    Its pages have no Save and no Delete button."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown inside another object's page, never edited there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- The site and its dashboard ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PanelRow:
    label: str
    value: str
    url: str = ""
    key: str = ""  # a stable name for tests and scripts (data-metric)


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    rows: list[PanelRow]
    note: str = ""


class ServiceAdminSite(admin.AdminSite):
    """The admin under the service's name, with a dashboard of panels on its index that
    apps contribute (`admin.site.add_panel(build)`, `build(request) -> Panel`)."""

    site_header = settings.SPECTACULAR_SETTINGS["TITLE"]
    site_title = "Shop admin"
    index_title = "Operations"
    site_url = "/api/docs/"  # "View site": the API docs (the service has no pages of its own)
    index_template = "admin/service_index.html"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.panels: list[Callable] = []

    def add_panel(self, build: Callable) -> Callable:
        self.panels.append(build)
        return build

    def index(self, request, extra_context=None):
        panels = [build(request) for build in self.panels]
        return super().index(request, {"panels": panels, **(extra_context or {})})
