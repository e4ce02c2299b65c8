"""The OpenAPI schema and the interactive docs, served with no internet access."""

import io
import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_is_openapi_3_and_lists_every_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/cart/",
        "/api/cart/{id}/",
        "/api/cart/{id}/apply_discount/",
        "/api/discount/",
        "/api/discount/{id}/",
    } <= set(schema["paths"])
    cart = schema["components"]["schemas"]["Cart"]["properties"]
    assert cart["total"]["type"] == "number"
    assert cart["id"]["format"] == "uuid"


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


def test_every_operation_documents_its_errors_with_the_error_component(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "field", "details"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "403", "406"} <= set(responses), (method, path)
            assert responses["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    pay = schema["paths"]["/api/cart/{id}/pay/"]["post"]["responses"]
    assert {"200", "402", "404", "409", "415", "502", "503", "504"} <= set(pay)


def test_schema_generates_without_warnings_and_validates():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
