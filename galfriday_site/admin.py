from django.contrib import admin

from galfriday_site.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens by user and expiry (the secret itself is never stored); delete one to revoke it."""

    list_display = ["prefix", "user", "created_at", "expires_at"]
    list_filter = ["expires_at"]
    search_fields = ["user__username", "prefix"]
    readonly_fields = ["user", "prefix", "digest", "session_hash", "created_at", "expires_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
