"""Fixtures shared by every test: API clients for each kind of caller."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient


@pytest.fixture
def api_client() -> APIClient:
    """An anonymous caller, as the tutorial's tests and a storefront are."""
    return APIClient()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(
        username="staff", password="a-long-staff-password", is_staff=True
    )


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def prod_access(settings):
    """Turn on the ENV=PROD access rules for one test."""
    settings.REQUIRE_STAFF_FOR_MANAGEMENT = True
