"""Every documented operation, called with the request example the docs offer.

The docs promise that each example works as offered, on a fresh database in DEV with the
fake provider, once the objects its path names exist. `SETUP` says, per operation and in
the order they are tried, how those objects are made through the API first; the walk
fails for an operation it does not know, so a new endpoint needs its line here.

    for step in walk(schema):
        params = step.prepare(post)             # post(path, body) -> JSON of a 2xx answer
        call(step.method, step.url(params), step.example)   # -> step.status
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

Post = Callable[[str, dict], dict]

_numbers = itertools.count(1)


def fresh_cart(post: Post) -> dict:
    return {"id": post("/api/cart/", {"total": 20, "currency": "USD", "items_number": 1})["id"]}


def fresh_discount(post: Post) -> dict:
    return {"id": post("/api/discount/", {"code": f"WALK{next(_numbers)}", "value": 1})["id"]}


def itemized_cart(post: Post) -> dict:
    line = {"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": 4.5}
    return {"id": post("/api/cart/", {"currency": "USD", "lines": [line]})["id"]}


def cart_line(post: Post) -> dict:
    cart = post(
        "/api/cart/",
        {
            "currency": "USD",
            "lines": [
                {"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": 4.5},
                {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 11},
            ],
        },
    )
    return {"id": cart["id"], "line_id": cart["lines"][0]["id"]}


def paid_cart(post: Post) -> dict:
    cart = fresh_cart(post)
    post(f"/api/cart/{cart['id']}/pay/", {"payment_method": "pm_card_visa"})
    return cart


def nothing(post: Post) -> dict:
    return {}


# operationId -> how to make what its path needs. Order matters: the discount example
# is created before the cart example applies its code.
SETUP: dict[str, Callable[[Post], dict]] = {
    "auth_token_create": nothing,  # the example's user: see `token_user`
    "discount_create": nothing,
    "discount_list": nothing,
    "discount_retrieve": fresh_discount,
    "discount_update": fresh_discount,
    "discount_partial_update": fresh_discount,
    "discount_codes_create": fresh_discount,
    "cart_create": nothing,
    "cart_list": nothing,
    "cart_retrieve": fresh_cart,
    "cart_apply_discount_create": fresh_cart,
    "cart_pay_create": fresh_cart,
    "cart_refund_create": paid_cart,
    "cart_lines_create": itemized_cart,
    "cart_lines_partial_update": cart_line,
    "cart_lines_destroy": cart_line,
}


@dataclasses.dataclass
class Step:
    operation_id: str
    method: str
    path: str
    summary: str
    example: Any
    status: int
    prepare: Callable[[Post], dict]

    def url(self, params: dict) -> str:
        return self.path.format(**params)


def operations(schema: dict) -> dict[str, tuple[str, str, dict]]:
    return {
        operation["operationId"]: (method, path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }


def walk(schema: dict) -> list[Step]:
    documented = operations(schema)
    unknown = set(documented) - set(SETUP)
    assert not unknown, f"add to tests/docs_examples.SETUP how to call: {sorted(unknown)}"
    steps = []
    for operation_id, prepare in SETUP.items():
        method, path, operation = documented[operation_id]
        (status,) = [int(s) for s in operation["responses"] if s.startswith("2")]
        steps.append(
            Step(
                operation_id=operation_id,
                method=method.upper(),
                path=path,
                summary=operation["summary"],
                example=request_example(operation),
                status=status,
                prepare=prepare,
            )
        )
    return steps


def request_example(operation: dict) -> Any:
    body = operation.get("requestBody")
    if body is None:
        return None
    examples = body["content"]["application/json"]["examples"]
    return next(iter(examples.values()))["value"]


def token_user(schema: dict) -> dict:
    """The username and password the token example sends: the walk creates that user."""
    _, _, operation = operations(schema)["auth_token_create"]
    return request_example(operation)
