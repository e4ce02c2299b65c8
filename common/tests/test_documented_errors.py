"""Every error an operation can raise is in its documented errors.

The code an operation runs is read statically, from its view method (and the
`perform_*` hook a viewset overrides), its request serializer, the clean() of that
serializer's model and its paginator, following every call into this project's modules:
functions by name, methods through `self` or (for names no framework class has) through
whichever project class defines them. What it finds:

- `raise SomeError(...)` of an `ApplicationError` subclass -> (its status, its code);
- `ValidationError(..., code="...")` (Django's or DRF's) -> (400, that code).

Each found pair must be among the operation's documented (status, code) pairs. So a new
error raised deep in a service fails here until the operation declares it.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types
from pathlib import Path

import pytest
from django import forms
from django.contrib import admin
from django.db import models
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.plumbing import force_instance
from rest_framework import pagination, serializers, views, viewsets

from common.errors import ApplicationError

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK_CLASSES = (
    models.Model,
    models.QuerySet,
    models.Manager,
    serializers.ModelSerializer,
    serializers.DecimalField,
    views.APIView,
    viewsets.GenericViewSet,
    pagination.CursorPagination,
    forms.ModelForm,
    admin.ModelAdmin,
    Exception,
    dict,
)
# Reachable in the code but impossible for the operation, and why.
IMPOSSIBLE = {
    # Creating: nothing used the code yet, and times_used starts at 0.
    ("discount_create", 400, "kind_in_use"),
    ("discount_create", 400, "below_times_used"),
    # Editing: an end in the past is allowed (it expires the code at once).
    ("discount_update", 400, "already_expired"),
    ("discount_partial_update", 400, "already_expired"),
    # Refunding moves a paid cart to partially_refunded or refunded, which its state
    # machine always allows (Cart.move_to's refusals are for pays).
    ("cart_refund_create", 409, "cart_paid"),
    ("cart_refund_create", 409, "cart_payment_in_progress"),
    ("cart_refund_create", 409, "invalid_payment_transition"),
    # Paying: the reasons a code cannot be reserved again are caught by
    # discount_hold_for_payment, which answers discount_reservation_expired instead.
    ("cart_pay_create", 400, "discount_expired"),
    ("cart_pay_create", 400, "discount_inactive"),
    ("cart_pay_create", 400, "discount_not_started"),
    ("cart_pay_create", 400, "discount_usage_limit_reached"),
    ("cart_pay_create", 400, "discount_budget_exhausted"),
    ("cart_pay_create", 400, "discount_customer_limit_reached"),
    ("cart_pay_create", 400, "discount_customer_required"),
    ("cart_pay_create", 400, "discount_first_order_only"),
    # Creating: nothing is held yet against a new code's budget.
    ("discount_create", 400, "below_amount_held"),
    # Creating a cart and changing lines: a code that no longer fits the cart is caught
    # by discount_reevaluate, which takes it off and says why in `discount_removed`; an
    # automatic promotion that cannot take the cart is skipped by
    # discount_apply_best_automatic.
    *(
        (operation, 400, code)
        for operation in (
            "cart_create",
            "cart_lines_create",
            "cart_lines_partial_update",
            "cart_lines_destroy",
        )
        for code in (
            "discount_currency_mismatch",
            "discount_has_no_effect",
            "discount_minimum_not_met",
            "discount_no_matching_lines",
            "discount_budget_exhausted",
            "discount_customer_required",
            "discount_customer_limit_reached",
            "discount_first_order_only",
            "discount_code_used",
            "discount_expired",
            "discount_inactive",
            "discount_not_started",
            "discount_usage_limit_reached",
        )
    ),
}


def is_project(obj) -> bool:
    """Defined in this repository's code (not a library's, not a test's)."""
    module = obj.__name__ if isinstance(obj, types.ModuleType) else obj.__module__ or ""
    top = sys.modules.get(module.split(".")[0])
    path = getattr(top, "__file__", None) or ""
    return path.startswith(str(ROOT)) and "/.venv/" not in path and ".tests" not in module


def project_methods() -> dict[str, list]:
    """Method name -> the project functions of that name, for names no framework class
    defines (a call `obj.check_usable()` can only mean one of those)."""
    index: dict[str, list] = {}
    for module in list(sys.modules.values()):
        if not is_project(module):
            continue
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            for name, attr in vars(cls).items():
                if isinstance(attr, (staticmethod, classmethod)):
                    attr = attr.__func__
                if inspect.isfunction(attr) and not any(
                    hasattr(base, name) for base in FRAMEWORK_CLASSES
                ):
                    index.setdefault(name, []).append(attr)
    return index


class Crawler:
    def __init__(self):
        self.index = project_methods()
        self.found: set[tuple[int, str]] = set()
        self.seen: set = set()

    def crawl(self, func) -> None:
        func = inspect.unwrap(getattr(func, "__func__", func))
        if func in self.seen or not inspect.isfunction(func) or not is_project(func):
            return
        self.seen.add(func)
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError):
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                error = self.resolve(target, func)
                if inspect.isclass(error) and issubclass(error, ApplicationError):
                    self.found.add((error.status_code, error.code))
            elif isinstance(node, ast.Call):
                self.validation_code(node, func)
                for callee in self.callees(node.func, func):
                    self.crawl(callee)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                value = self.resolve(node, func)  # a function passed along, e.g. a validator
                if inspect.isfunction(value):
                    self.crawl(value)

    def validation_code(self, call: ast.Call, func) -> None:
        name = call.func.attr if isinstance(call.func, ast.Attribute) else ""
        name = call.func.id if isinstance(call.func, ast.Name) else name
        if not name.endswith("ValidationError"):
            return
        code = next((k.value for k in call.keywords if k.arg == "code"), None)
        if code is None and len(call.args) > 1:
            code = call.args[1]
        if isinstance(code, ast.Constant) and isinstance(code.value, str):
            self.found.add((400, code.value))
        elif code is not None:
            value = self.resolve(code, func)
            if isinstance(value, str):
                self.found.add((400, value))

    def resolve(self, node, func):
        """The object an expression names in `func`'s module, if it can be known."""
        if isinstance(node, ast.Name):
            return func.__globals__.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.resolve(node.value, func)
            if isinstance(owner, types.ModuleType) or inspect.isclass(owner) or owner is not None:
                return getattr(owner, node.attr, None)
        return None

    def callees(self, node, func) -> list:
        if isinstance(node, ast.Name):
            return [func.__globals__.get(node.id)]
        if not isinstance(node, ast.Attribute):
            return []
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            owner = func.__globals__.get(func.__qualname__.split(".")[0])
            return [getattr(owner, node.attr, None), *self.index.get(node.attr, [])]
        resolved = self.resolve(node, func)
        if resolved is not None:
            return [resolved]
        return self.index.get(node.attr, [])


def starting_points(view, method: str) -> list:
    action = getattr(view, "action", None) or method.lower()
    points = [getattr(view, action, None)]
    if action in ("create",):
        points.append(getattr(view, "perform_create", None))
    if action in ("update", "partial_update"):
        points.append(getattr(view, "perform_update", None))
    request = force_instance(view.schema.get_request_serializer())
    if method in ("POST", "PUT", "PATCH") and isinstance(request, serializers.BaseSerializer):
        serializer_class = type(request)
        points += [getattr(serializer_class, name) for name in dir(serializer_class)]
        model = getattr(getattr(serializer_class, "Meta", None), "model", None)
        if model is not None:
            points.append(model.clean)
    if action == "list" and getattr(view, "pagination_class", None):
        points += list(vars(view.pagination_class).values())
    return [p for p in points if callable(p)]


def documented_pairs(operation: dict) -> set[tuple[int, str]]:
    pairs = set()
    for status, response in operation["responses"].items():
        if status >= "400":
            narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
            for code in narrowed["properties"]["error"]["properties"]["code"]["enum"]:
                pairs.add((int(status), code))
    return pairs


def operations():
    generator = SchemaGenerator()
    schema = generator.get_schema(request=None, public=True)
    visited = set()
    for path, _, method, view in generator._get_paths_and_endpoints():
        operation = schema["paths"].get(path, {}).get(method.lower())
        if operation is None:  # the docs themselves, excluded from the schema
            continue
        visited.add(operation["operationId"])
        view.schema.method = method
        yield operation["operationId"], starting_points(view, method), operation
    every = {op["operationId"] for methods in schema["paths"].values() for op in methods.values()}
    assert visited == every


@pytest.fixture(scope="module")
def every_operation():
    return list(operations())


def raised_by(points) -> set[tuple[int, str]]:
    crawler = Crawler()
    for point in points:
        crawler.crawl(point)
    return crawler.found


def test_every_error_an_operation_can_raise_is_documented(every_operation):
    missing = {}
    for operation_id, points, operation in every_operation:
        raised = {(s, c) for s, c in raised_by(points) if (operation_id, s, c) not in IMPOSSIBLE}
        undeclared = raised - documented_pairs(operation)
        if undeclared:
            missing[operation_id] = sorted(undeclared)
    assert not missing, f"declare these in the operation's `documented(errors=…)`: {missing}"


def test_the_reading_follows_calls_deep_into_services_and_models(every_operation):
    points = {op_id: pts for op_id, pts, _ in every_operation}

    pay = raised_by(points["cart_pay_create"])
    apply = raised_by(points["cart_apply_discount_create"])
    create = raised_by(points["discount_create"])

    assert {(402, "card_declined"), (504, "payment_outcome_unknown"), (400, "invalid")} <= pay
    assert {(409, "invalid_payment_transition"), (409, "idempotency_key_reused")} <= pay
    assert {(400, "discount_has_no_effect"), (400, "discount_usage_limit_reached")} <= apply
    assert {(400, "code_taken"), (400, "unknown_currency"), (400, "out_of_range")} <= create


def test_impossible_pairs_are_all_still_reachable(every_operation):
    """An exemption the code no longer needs is removed, not kept as a blind spot."""
    raised = {
        (op_id, status, code)
        for op_id, points, _ in every_operation
        for status, code in raised_by(points)
    }
    assert raised >= IMPOSSIBLE
