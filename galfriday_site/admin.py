from django.contrib import admin

from galfriday_site.models import ApiToken, SafetyOverride


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens by user and expiry (the secret itself is never stored); delete one to revoke it."""

    list_display = ["prefix", "user", "created_at", "expires_at"]
    list_filter = ["expires_at"]
    search_fields = ["user__username", "prefix"]
    readonly_fields = ["user", "prefix", "digest", "session_hash", "created_at", "expires_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(SafetyOverride)
class SafetyOverrideAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Resumptions after a safety halt with critical discrepancies open: the record of each override."""

    list_display = ["created_at", "actor", "halted_by", "reason"]
    readonly_fields = ["created_at", "actor", "reason", "halted_by", "halt_reason", "open_critical"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
