"""Site-wide tables: API tokens (stored as digests). (The audited overrides of safety halts are trading's:
`trading.models.SafetyOverride`.)"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """An API token, knox-style: the secret is shown once when it is issued; only its SHA-256 digest is stored.

    A token is refused once it has expired, once its user is inactive, and once the user's password has changed
    (`session_hash` is the user's session hash when the token was issued, as Django invalidates sessions)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to tell tokens apart.")
    session_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"
