"""The OpenAPI schema and the interactive docs, served with no internet access."""

import re

import pytest

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
