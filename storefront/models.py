"""Storefront keys: what a shop's storefront sends (`X-Storefront-Key`) to create carts.

    key, secret = StorefrontKey.issue(name="web shop")   # the secret is shown once
    StorefrontKey.objects.verify(secret)                  # the active key, or None

Only a SHA-256 hash of the secret is stored (the secret is 32 random bytes, so a slow
password hash would add nothing), with its first characters as `prefix` so staff can
tell keys apart. Switch a key off (`active`) to revoke it; issue a new one to rotate.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

SECRET_PREFIX = "sfk_"
# `last_used` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class StorefrontKeyQuerySet(models.QuerySet):
    def verify(self, secret: str) -> StorefrontKey | None:
        """The active key whose secret this is (its `last_used` updated), or None."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 100:
            return None
        key = self.filter(key_hash=_digest(secret), active=True).first()
        if key is not None:
            now = timezone.now()
            self.filter(pk=key.pk).filter(
                Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_RESOLUTION)
            ).update(last_used=now)
        return key


class StorefrontKey(models.Model):
    name = models.CharField(max_length=100, help_text="Which storefront uses it.")
    prefix = models.CharField(max_length=16, editable=False, help_text="The secret's start.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    active = models.BooleanField(default=True, help_text="Switch off to revoke the key.")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    objects = StorefrontKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean_fields(self, exclude=None) -> None:
        # Spaces around a name are no part of it, and spaces alone are no name: the
        # admin's form strips them before this runs; `issue` relies on this.
        if isinstance(self.name, str):
            self.name = self.name.strip()
        super().clean_fields(exclude=exclude)

    def new_secret(self) -> str:
        """Give this key a fresh secret and return it: the only time it is readable."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        self.prefix = secret[: len(SECRET_PREFIX) + 6]
        self.key_hash = _digest(secret)
        return secret

    @classmethod
    def issue(cls, *, name: str) -> tuple[StorefrontKey, str]:
        """A new key and its secret. Raises `ValidationError` for a name the admin
        refuses too (none, or longer than 100 characters)."""
        key = cls(name=name)
        secret = key.new_secret()
        key.full_clean()
        key.save()
        return key, secret
