"""The OpenAPI schema and the interactive docs, served with no internet access: a valid
schema whose every operation speaks to its caller, with examples that match it and the
errors it can answer; the README's error table is generated from it."""

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from common.schema import error_table
from common.testing import error_of

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# Words for developers, not for callers: a description holding one leaks a docstring.
IMPLEMENTATION_WORDS = re.compile(
    r"\b(queryset|filter backends?|FilterSet|profile|DRF|serializer|mixin|prefetch|SQL|"
    r"docstring|select_related)\b",
    re.IGNORECASE,
)
PAY_ONLY_MEMBERS = {"payment_taken", "refund_made", "retryable", "cart", "payment", "refund"}


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def each_operation(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def validator(schema, subschema) -> OAS30Validator:
    return OAS30Validator(nullable_refs({**subschema, "components": schema["components"]}))


def nullable_refs(node):
    """`{"allOf": [ref], "nullable": true}` (how drf-spectacular writes a nullable nested
    object) as "that object or null": the validator does not carry `nullable` into allOf."""
    if isinstance(node, list):
        return [nullable_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: nullable_refs(value) for key, value in node.items()}
    if node.get("nullable") and "allOf" in node:
        rest = {k: v for k, v in node.items() if k not in ("allOf", "nullable")}
        return {**rest, "anyOf": [{"allOf": node["allOf"]}, {"enum": [None]}]}
    return node


def test_schema_is_openapi_3_and_lists_every_endpoint(schema):
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/cart/",
        "/api/cart/{id}/",
        "/api/cart/{id}/apply_discount/",
        "/api/cart/{id}/pay/",
        "/api/discount/",
        "/api/discount/{id}/",
        "/api/auth/token/",
    } <= set(schema["paths"])
    cart = schema["components"]["schemas"]["Cart"]["properties"]
    assert cart["total"]["type"] == "number"
    assert cart["id"]["format"] == "uuid"


def test_schema_is_a_valid_openapi_document(schema):
    validate_spec(schema)  # raises on any error


def test_schema_generates_without_warnings_and_validates():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())


def test_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert not [url for url in assets if url.startswith(("http:", "https:", "//"))]
    bundle = next(url for url in assets if url.endswith("swagger-ui-bundle.js"))
    asset = client.get(bundle)
    assert asset.status_code == 200
    assert b"SwaggerUI" in b"".join(asset.streaming_content)


@pytest.mark.parametrize("url", ["/api/docs/", "/api/schema/"])
def test_docs_and_schema_answer_options_in_json_as_every_view_does(client, url):
    client.raise_request_exception = False  # a 500 is an answer to see, as a caller sees it

    response = client.options(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert response.json()["name"]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/schema/"])
@pytest.mark.parametrize(
    ("method", "headers", "status", "code"),
    [
        ("POST", {}, 405, "method_not_allowed"),
        ("PUT", {}, 405, "method_not_allowed"),
        ("PATCH", {}, 405, "method_not_allowed"),
        ("DELETE", {}, 405, "method_not_allowed"),
        ("GET", {"HTTP_ACCEPT": "application/xml"}, 406, "not_acceptable"),
        ("GET", {"HTTP_AUTHORIZATION": "Token not-a-token"}, 401, "authentication_failed"),
    ],
)
def test_docs_and_schema_refuse_in_the_json_error_shape(
    client, url, method, headers, status, code
):
    # The page is HTML and the schema YAML or JSON, but an error is JSON like any other.
    response = client.generic(method, url, **headers)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == code


def test_every_operation_has_its_own_summary_and_description_for_callers(schema):
    descriptions = {}
    for name, operation in each_operation(schema):
        assert operation.get("summary"), name
        description = operation.get("description", "")
        assert len(description) > 40, name
        assert not IMPLEMENTATION_WORDS.search(description), (name, description)
        descriptions.setdefault(description, []).append(name)
    shared = {text: names for text, names in descriptions.items() if len(names) > 1}
    assert not shared


def test_no_docstring_reaches_the_schema(schema):
    text = str(schema)
    assert "filter backends" not in text
    assert "Thin by design" not in text


def test_every_request_body_has_an_example_that_matches_its_schema(schema):
    for name, operation in each_operation(schema):
        if "requestBody" not in operation:
            continue
        content = operation["requestBody"]["content"]
        assert list(content) == ["application/json"], name  # JSON only, never a form
        media = content["application/json"]
        assert media.get("examples"), f"{name}: Swagger UI would invent values"
        for example in media["examples"].values():
            validator(schema, media["schema"]).validate(example["value"])
            assert "string" not in example["value"].values(), name


def test_every_response_has_examples_that_match_its_schema(schema):
    for name, operation in each_operation(schema):
        for status, response in operation["responses"].items():
            media = response["content"]["application/json"]
            assert media.get("examples"), (name, status)
            check = validator(schema, media["schema"])
            for key, example in media["examples"].items():
                errors = [e.message for e in check.iter_errors(example["value"])]
                assert not errors, (name, status, key, errors)


def test_each_error_status_lists_its_codes_with_one_example_each(schema):
    for name, operation in each_operation(schema):
        for status, response in operation["responses"].items():
            if status < "400":
                continue
            media = response["content"]["application/json"]
            base, narrowed = media["schema"]["allOf"]
            assert base == {"$ref": "#/components/schemas/Error"}
            codes = narrowed["properties"]["error"]["properties"]["code"]["enum"]
            examples = [e["value"]["error"]["code"] for e in media["examples"].values()]
            assert examples == codes, (name, status)


def test_pay_only_members_appear_only_where_they_occur(schema):
    where = set()
    for name, operation in each_operation(schema):
        for status, response in operation["responses"].items():
            if status >= "400":
                narrowed = response["content"]["application/json"]["schema"]["allOf"][1]
                for member in set(narrowed["properties"]) & PAY_ONLY_MEMBERS:
                    where.add((name, status, member))
    pay = "POST /api/cart/{id}/pay/"
    refund = "POST /api/cart/{id}/refund/"
    assert where == {
        (pay, "402", "cart"),
        (pay, "402", "payment"),
        (pay, "409", "cart"),  # discount_reservation_expired: the cart's new total
        *((pay, s, m) for s in ("502", "503", "504") for m in ("payment_taken", "retryable")),
        # earlier_payment_outcome_unknown: another card while an attempt may have charged
        (pay, "409", "payment_taken"),
        (pay, "409", "retryable"),
        (refund, "402", "cart"),
        (refund, "402", "refund"),
        *((refund, s, m) for s in ("502", "503", "504") for m in ("refund_made", "retryable")),
    }


def test_a_declined_payment_is_documented_with_its_cart_and_decline_code(schema):
    declined = schema["paths"]["/api/cart/{id}/pay/"]["post"]["responses"]["402"]
    example = declined["content"]["application/json"]["examples"]["CardDeclined"]["value"]
    assert example["error"]["decline_code"] == "insufficient_funds"
    assert example["cart"]["payment_status"] == "failed"
    assert example["payment"]["status"] == "failed"


def test_outcome_unknown_is_documented_as_maybe_charged(schema):
    pay = schema["paths"]["/api/cart/{id}/pay/"]["post"]["responses"]
    unknown = pay["504"]["content"]["application/json"]["examples"]
    assert list(unknown) == ["PaymentOutcomeUnknown"]  # a 504 is never "nothing taken"
    assert unknown["PaymentOutcomeUnknown"]["value"]["payment_taken"] is None
    unavailable = pay["503"]["content"]["application/json"]["examples"]
    assert unavailable["PaymentProviderUnavailable"]["value"]["payment_taken"] is False
    assert unavailable["PaymentProviderBusy"]["value"]["payment_taken"] is False
    refund = schema["paths"]["/api/cart/{id}/refund/"]["post"]["responses"]["504"]
    refund_unknown = refund["content"]["application/json"]["examples"]
    assert refund_unknown["RefundOutcomeUnknown"]["value"]["refund_made"] is None


def test_token_endpoint_needs_no_token_and_takes_json(schema):
    token = schema["paths"]["/api/auth/token/"]["post"]

    assert "security" not in token
    assert not {"401", "403"} & set(token["responses"])
    assert list(token["requestBody"]["content"]) == ["application/json"]
    assert token["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Token"
    }
    codes = token["responses"]["400"]["content"]["application/json"]["schema"]["allOf"][1]
    assert "invalid_credentials" in codes["properties"]["error"]["properties"]["code"]["enum"]


def test_a_time_filter_documents_a_time_out_of_range(schema):
    bad = schema["paths"]["/api/events/"]["get"]["responses"]["400"]["content"]
    errors = [e["value"]["error"] for e in bad["application/json"]["examples"].values()]
    overflow = [(e["field"], e["message"]) for e in errors if e["code"] == "overflow"]
    assert overflow == [("created_after", "Datetime value out of range.")]


def test_open_operations_show_no_lock_and_staff_ones_do(schema):
    # Creating a cart needs a storefront key in production (or a staff token).
    assert {"storefrontKey": []} in schema["paths"]["/api/cart/"]["post"]["security"]
    assert "security" not in schema["paths"]["/api/cart/{id}/pay/"]["post"]
    assert schema["paths"]["/api/discount/"]["post"]["security"]
    assert schema["paths"]["/api/cart/"]["get"]["security"]


def test_readme_error_table_is_generated_from_the_schema(schema):
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- error-table:start -->\n", "<!-- error-table:end -->"
    assert start in readme
    assert end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == error_table(schema), "run: python manage.py error_table --write"


def test_error_table_command_rewrites_only_the_table(tmp_path, schema):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n<!-- error-table:start -->\nold\n<!-- error-table:end -->\n\nAfter.\n"
    )

    call_command("error_table", "--write", "--readme", str(readme), stdout=io.StringIO())

    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- error-table:start -->\n| status | codes |")
    assert text.endswith("<!-- error-table:end -->\n\nAfter.\n")
    assert error_table(schema) in text
